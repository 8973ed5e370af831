#include "widgets/projection_heat_map.h"

#include "widgets/diverging_colors.h"

#include <QToolTip>

#include <algorithm>
#include <cmath>

namespace {
// A token's text as a tick label: whitespace made visible, long pieces cut.
QString columnLabel(QString text) {
    text.replace('\n', QStringLiteral("\u23ce"));
    text.replace('\t', QStringLiteral("\u21e5"));
    text = text.trimmed();
    if (text.isEmpty()) return QStringLiteral("\u2423");
    return text.size() > 12 ? text.left(11) + QStringLiteral("\u2026") : text;
}
}  // namespace

ProjectionHeatMap::ProjectionHeatMap(const QString& title, QWidget* parent)
    : QCustomPlot(parent), columnNoun_(tr("token")) {
    setMouseTracking(true);  // tooltips on hover, not only while a button is held
    plotLayout()->insertRow(0);
    title_ = new QCPTextElement(this, title, QFont(font().family(), font().pointSize(), QFont::Bold));
    plotLayout()->addElement(0, 0, title_);

    xAxis->setLabel(tr("token"));
    yAxis->setLabel(tr("layer"));
    // Integer ticks only: a fractional layer or token does not exist.
    for (QCPAxis* axis : {xAxis, yAxis}) {
        QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
        ticker->setTickStep(1.0);
        ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
        axis->setTicker(ticker);
    }

    map_ = new QCPColorMap(xAxis, yAxis);
    // Interpolation blurs neighbouring cells into each other (docs/platform-notes.md).
    map_->setInterpolate(false);
    map_->setTightBoundary(false);
    colorScale_ = new QCPColorScale(this);
    colorScale_->setBarWidth(8);
    plotLayout()->addElement(1, 1, colorScale_);
    map_->setColorScale(colorScale_);
    map_->setGradient(diverging::gradient());
    // Keep the colour bar as tall as the map.
    auto* margins = new QCPMarginGroup(this);
    axisRect()->setMarginGroup(QCP::msBottom | QCP::msTop, margins);
    colorScale_->setMarginGroup(QCP::msBottom | QCP::msTop, margins);

    connect(this, &QCustomPlot::mouseMove, this, &ProjectionHeatMap::showToolTip);
    clearColumns(1, 1);
}

void ProjectionHeatMap::setTitle(const QString& title) { title_->setText(title); }

void ProjectionHeatMap::setColumnLabelsShown(bool shown) {
    columnLabelsShown_ = shown;
    updateColumnTicker();
    replot(QCustomPlot::rpQueuedReplot);
}

void ProjectionHeatMap::setColumnNoun(const QString& noun) {
    columnNoun_ = noun;
    xAxis->setLabel(columnLabelsShown_ ? QString() : noun);
}

void ProjectionHeatMap::updateColumnTicker() {
    if (!columnLabelsShown_) {
        xAxis->setLabel(columnNoun_);
        if (!xAxis->ticker().dynamicCast<QCPAxisTickerText>()) return;
        QSharedPointer<QCPAxisTickerFixed> ticker(new QCPAxisTickerFixed);
        ticker->setTickStep(1.0);
        ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
        xAxis->setTicker(ticker);
        return;
    }
    // The labels say what the columns are; an axis title under them would only take room.
    xAxis->setLabel(QString());
    QSharedPointer<QCPAxisTickerText> ticker(new QCPAxisTickerText);
    const QFontMetrics metrics(xAxis->tickLabelFont());
    int widest = 0;
    for (int column = 0; column < tokenTexts_.size(); ++column) {
        const QString label = columnLabel(tokenTexts_[column]);
        widest = std::max(widest, metrics.horizontalAdvance(label));
        ticker->addTick(column, label);
    }
    xAxis->setTicker(ticker);
    // Upright labels read best; turn them only when neighbours would overlap.
    const int plotWidth = axisRect()->width() > 0 ? axisRect()->width() : width() - 120;
    const int columnWidth = plotWidth / std::max(1, static_cast<int>(tokenTexts_.size()));
    xAxis->setTickLabelRotation(widest + 6 <= columnWidth ? 0 : 90);
}

void ProjectionHeatMap::resizeEvent(QResizeEvent* event) {
    QCustomPlot::resizeEvent(event);
    if (columnLabelsShown_) {
        updateColumnTicker();
        replot(QCustomPlot::rpQueuedReplot);
    }
}

void ProjectionHeatMap::clearColumns(int layerCount, int expectedTokens) {
    showColumns({}, {}, layerCount, 1.0, expectedTokens);
}

void ProjectionHeatMap::showColumns(const QStringList& tokenTexts, const std::vector<std::vector<float>>& columns,
                                    int layerCount, double scale, int expectedTokens) {
    tokenTexts_ = tokenTexts;
    columns_ = columns;
    layerCount_ = layerCount;
    const int tokens = static_cast<int>(columns.size());

    // QCPColorMap spreads a map's cells over its key range, so a single column would have no
    // width: show it as two half-width copies covering the same -0.5..0.5 cell.
    const int keyCells = tokens == 1 ? 2 : tokens;
    auto* data = map_->data();
    data->setSize(std::max(keyCells, 1), std::max(layerCount, 1));
    data->setRange(tokens == 1 ? QCPRange(-0.25, 0.25) : QCPRange(0, std::max(tokens - 1, 0)),
                   QCPRange(0, std::max(layerCount - 1, 0)));
    data->fill(0.0);
    for (int cell = 0; cell < keyCells && tokens > 0; ++cell) {
        const auto& column = columns[static_cast<std::size_t>(tokens == 1 ? 0 : cell)];
        for (int layer = 0; layer < layerCount && layer < static_cast<int>(column.size()); ++layer)
            data->setCell(cell, layer, static_cast<double>(column[static_cast<std::size_t>(layer)]));
    }
    map_->setVisible(tokens > 0);
    if (columnLabelsShown_) updateColumnTicker();
    const double span = scale > 0 && std::isfinite(scale) ? scale : 1.0;
    map_->setDataRange(QCPRange(-span, span));  // centred on zero: white means no projection
    xAxis->setRange(-0.5, std::max(tokens, expectedTokens) - 0.5);
    yAxis->setRange(-0.5, layerCount - 0.5);
    replot(QCustomPlot::rpQueuedReplot);
}

double ProjectionHeatMap::valueAt(int column, int layer) const {
    if (column < 0 || column >= columnCount() || layer < 0) return 0.0;
    const auto& values = columns_[static_cast<std::size_t>(column)];
    return layer < static_cast<int>(values.size()) ? values[static_cast<std::size_t>(layer)] : 0.0;
}

QString ProjectionHeatMap::describeCellAt(const QPoint& position) const {
    if (!axisRect()->rect().contains(position)) return {};
    const int column = static_cast<int>(std::lround(xAxis->pixelToCoord(position.x())));
    const int layer = static_cast<int>(std::lround(yAxis->pixelToCoord(position.y())));
    if (column < 0 || column >= columnCount() || layer < 0 || layer >= layerCount_) return {};
    QString token = tokenTexts_.value(column);
    token.replace('\n', QStringLiteral("\\n"));
    return tr("layer %1, %2 %3 \u201c%4\u201d: %5")
        .arg(layer)
        .arg(columnNoun_)
        .arg(column)
        .arg(token)
        .arg(valueAt(column, layer), 0, 'f', 2);
}

void ProjectionHeatMap::showToolTip(QMouseEvent* event) {
    const QString text = describeCellAt(event->pos());
    if (text.isEmpty()) QToolTip::hideText();
    else QToolTip::showText(event->globalPosition().toPoint(), text, this);
}
