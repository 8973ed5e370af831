#pragma once
// The widget suites' one fixture: an EngineClient with the real default model loaded, made once
// per suite in initTestCase and shared by its test functions.
#include "shell/engine_client.h"
#include "test_support.h"

#include <QSignalSpy>

#include <memory>

namespace persona_test {

inline std::unique_ptr<EngineClient> loadedEngine(const QString& model = defaultModelPath()) {
    auto engine = std::make_unique<EngineClient>();
    QSignalSpy loaded(engine.get(), &EngineClient::modelLoaded);
    QSignalSpy failed(engine.get(), &EngineClient::loadFailed);
    engine->loadModel(model);
    if (!loaded.wait(120000))
        qFatal("%s did not load: %s", qPrintable(model),
               failed.isEmpty() ? "timed out" : qPrintable(failed.first().at(0).toString()));
    return engine;
}

}  // namespace persona_test
