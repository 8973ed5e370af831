// The engine's thread count fitted to the free cores (model/cpu_share.h): the rule, and real
// readings of /proc with a real busy process beside this one.
#include "model/cpu_share.h"

#include <ATen/Parallel.h>
#include <QtTest>

#include <csignal>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace {

// A child process spinning on a core until it is destroyed.
class BusyChild {
public:
    BusyChild() : pid_(::fork()) {
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGKILL);
            for (volatile unsigned long spin = 0;; spin = spin + 1) {
            }
        }
    }
    ~BusyChild() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    bool started() const { return pid_ > 0; }

private:
    pid_t pid_;
};

// refit() on this thread for `seconds`, as forward steps would call it.
void refitFor(double seconds) {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
        persona::model::cpu_share::refit();
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
}

}  // namespace

class TestCpuShare : public QObject {
    Q_OBJECT

private slots:
    void fittedThreadsFollowFreeCoresWithoutFlapping_data() {
        QTest::addColumn<int>("current");
        QTest::addColumn<int>("most");
        QTest::addColumn<double>("freeCores");
        QTest::addColumn<int>("expected");
        QTest::newRow("quiet stays") << 2 << 2 << 1.9 << 2;
        QTest::newRow("a light neighbour keeps both") << 2 << 2 << 1.55 << 2;
        QTest::newRow("a busy core drops one") << 2 << 2 << 1.0 << 1;
        QTest::newRow("two thirds of a core taken drops one") << 2 << 2 << 1.33 << 1;
        QTest::newRow("half back is not enough") << 1 << 2 << 1.6 << 1;
        QTest::newRow("three quarters back restores") << 1 << 2 << 1.8 << 2;
        QTest::newRow("never above most") << 2 << 2 << 7.5 << 2;
        QTest::newRow("never below one") << 2 << 2 << 0.1 << 1;
        QTest::newRow("eight cores, five taken") << 8 << 8 << 3.0 << 3;
        QTest::newRow("eight cores, back from three") << 3 << 8 << 7.9 << 8;
    }
    void fittedThreadsFollowFreeCoresWithoutFlapping() {
        QFETCH(int, current);
        QFETCH(int, most);
        QFETCH(double, freeCores);
        QFETCH(int, expected);
        QCOMPARE(persona::model::cpu_share::fitted_threads(current, most, freeCores), expected);
    }

    void othersBusyLeavesThisProcessOut() {
        using persona::model::cpu_share::Reading;
        const Reading before{10.0, 100.0, 4.0}, after{12.0, 103.0, 5.0};
        // 3 core-seconds in 2 s, 1 of them this process's: one core-second over 2 s is others'.
        QCOMPARE(persona::model::cpu_share::others_busy(before, after), 1.0);
        QCOMPARE(persona::model::cpu_share::others_busy(after, after), 0.0);
    }

    // A process spinning beside this one shows as (nearly) a core other processes take, and this
    // thread's libtorch count drops to one while it runs.
    void aBusyNeighbourIsSeenAndMakesRoom() {
        if (std::thread::hardware_concurrency() < 2) QSKIP("one core: nothing to fit");
        const auto first = persona::model::cpu_share::read();
        QVERIFY2(first.has_value(), "/proc/stat or /proc/self/stat could not be read");
        {
            BusyChild busy;
            QVERIFY(busy.started());
            std::this_thread::sleep_for(std::chrono::milliseconds(600));
            const auto second = persona::model::cpu_share::read();
            QVERIFY(second.has_value());
            const double others = persona::model::cpu_share::others_busy(*first, *second);
            QVERIFY2(others >= 0.6, qPrintable(QString("a spinning neighbour counted as %1 cores").arg(others)));

            persona::model::cpu_share::enable(2);
            QCOMPARE(at::get_num_threads(), 2);
            refitFor(0.8);
            QCOMPARE(at::get_num_threads(), 1);
        }
        // With the neighbour gone the count comes back, though this process keeps a core busy
        // itself: its own threads are not other programs.
        std::atomic<bool> stop{false};
        std::thread ownWork([&stop] {
            for (volatile unsigned long spin = 0; !stop.load(std::memory_order_relaxed); spin = spin + 1) {
            }
        });
        refitFor(0.8);
        stop = true;
        ownWork.join();
        if (at::get_num_threads() != 2) {
            const auto a = persona::model::cpu_share::read();
            std::this_thread::sleep_for(std::chrono::milliseconds(500));
            const auto b = persona::model::cpu_share::read();
            const double others = persona::model::cpu_share::others_busy(*a, *b);
            if (others > 0.25) QSKIP(qPrintable(QString("other processes keep %1 cores busy: the count cannot come back").arg(others)));
            QFAIL(qPrintable(QString("the count stayed at %1 with other processes at %2 cores").arg(at::get_num_threads()).arg(others)));
        }
    }
};

QTEST_GUILESS_MAIN(TestCpuShare)
#include "test_cpu_share.moc"
