// wait_test.cc — spin-then-sleep waiting (libsvc/src/wait.c): policies and
// the adaptive budget, the doorbell (a syscall only when the peer sleeps),
// timeouts, and noticing a dead peer promptly whether spinning or sleeping.
// Timing checks use wide bounds: the machine is shared and may be loaded.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "c_atomic_compat.h" // before wait.h

extern "C" {
#include "internal.h"
#include "svc.h"
#include "wait.h"
}

namespace {

using Clock = std::chrono::steady_clock;

double MsSince(Clock::time_point t) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t).count();
}

class Sockets : public ::testing::Test {
protected:
  void SetUp() override {
    ASSERT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fd_));
  }
  void TearDown() override {
    for (int &f : fd_)
      if (f >= 0)
        close(f);
  }
  // Bytes waiting on fd without blocking.
  int Pending(int fd) {
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    return n < 0 ? 0 : (int)n;
  }
  int fd_[2] = {-1, -1};
  _Atomic uint32_t seq_ = 0;
  _Atomic uint32_t sleeping_ = 0;
};

// ---- policies and budget ----

TEST(Waiter, InitialBudgets) {
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_ADAPTIVE);
  EXPECT_GT(w.budget_ns, 0u);
  EXPECT_LE(w.budget_ns, (uint32_t)SVC__SPIN_MAX_NS);
  EXPECT_EQ(w.spinners, nullptr);
  svc__waiter_init(&w, SVC_WAIT_SPIN);
  EXPECT_EQ(w.budget_ns, (uint32_t)SVC__SPIN_FORCED_NS);
  svc__waiter_init(&w, SVC_WAIT_BLOCK);
  EXPECT_EQ(w.budget_ns, 0u);
}

TEST(Waiter, AdaptiveBudgetShrinksTowardSleepingOnSlowWaits) {
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_ADAPTIVE);
  for (int i = 0; i < 64; i++)
    svc__waiter_learn(&w, 50 * 1000 * 1000);
  EXPECT_EQ(w.budget_ns, 0u) << "slow calls: pure sleeping";
  // A short wait probes back into spinning, never above the cap.
  svc__waiter_learn(&w, 1000);
  EXPECT_GT(w.budget_ns, 0u);
  for (int i = 0; i < 64; i++)
    svc__waiter_learn(&w, SVC__SPIN_MAX_NS / 2 - 1);
  EXPECT_LE(w.budget_ns, (uint32_t)SVC__SPIN_MAX_NS);
}

TEST(Waiter, FixedPoliciesDoNotLearn) {
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_SPIN);
  for (int i = 0; i < 10; i++)
    svc__waiter_learn(&w, 50 * 1000 * 1000);
  EXPECT_EQ(w.budget_ns, (uint32_t)SVC__SPIN_FORCED_NS);
  svc__waiter_init(&w, SVC_WAIT_BLOCK);
  svc__waiter_learn(&w, 100);
  EXPECT_EQ(w.budget_ns, 0u);
}

// ---- spin ----

TEST(Spin, ReturnsAtOnceWhenAlreadyChanged) {
  _Atomic uint32_t seq = 5;
  for (svc_wait_policy p : {SVC_WAIT_ADAPTIVE, SVC_WAIT_SPIN, SVC_WAIT_BLOCK}) {
    svc__waiter w;
    svc__waiter_init(&w, p);
    EXPECT_EQ(1, svc__spin(&w, &seq, 4)) << p;
  }
}

TEST(Spin, BlockPolicyNeverSpins) {
  _Atomic uint32_t seq = 0;
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_BLOCK);
  auto t = Clock::now();
  for (int i = 0; i < 1000; i++)
    EXPECT_EQ(0, svc__spin(&w, &seq, 0));
  EXPECT_LT(MsSince(t), 200.0);
}

TEST(Spin, AdaptiveGivesUpWithinItsBudget) {
  _Atomic uint32_t seq = 0;
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_ADAPTIVE);
  auto t = Clock::now();
  EXPECT_EQ(0, svc__spin(&w, &seq, 0));
  // Budget <= 100 us; allow for preemption on a loaded machine.
  EXPECT_LT(MsSince(t), 50.0);
}

TEST(Spin, SeesAChangeFromAnotherThread) {
  _Atomic uint32_t seq = 0;
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_SPIN);
  std::thread th([&] { atomic_store(&seq, 1u); });
  // The writer may not be scheduled within one budget on a busy machine;
  // what matters is that a spin eventually observes the store.
  int got = 0;
  auto t = Clock::now();
  while (!got && MsSince(t) < 10000)
    got = svc__spin(&w, &seq, 0);
  th.join();
  EXPECT_EQ(1, got);
}

TEST(Spin, RespectsTheSpinnerCap) {
  _Atomic uint32_t seq = 0;
  _Atomic int spinners = 2;
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_SPIN); // would spin 50 ms if allowed
  w.spinners = &spinners;
  w.max_spinners = 2;
  auto t = Clock::now();
  EXPECT_EQ(0, svc__spin(&w, &seq, 0));
  EXPECT_LT(MsSince(t), 20.0) << "cap reached: must not spin";
  EXPECT_EQ(atomic_load(&spinners), 2);
  // Below the cap it spins, and gives its slot back afterwards.
  w.max_spinners = 3;
  atomic_store(&seq, 0u);
  std::thread th([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    atomic_store(&seq, 1u);
  });
  int got = 0;
  t = Clock::now();
  while (!got && MsSince(t) < 10000)
    got = svc__spin(&w, &seq, 0);
  th.join();
  EXPECT_EQ(got, 1);
  EXPECT_EQ(atomic_load(&spinners), 2);
}

// ---- wake and doorbell ----

TEST_F(Sockets, WakeRingsOnlyWhenThePeerSleeps) {
  EXPECT_EQ(0, svc__wake(&seq_, 1, &sleeping_, fd_[0]));
  EXPECT_EQ(atomic_load(&seq_), 1u);
  EXPECT_EQ(0, Pending(fd_[1])) << "peer spinning: no syscall, no byte";
  atomic_store(&sleeping_, 1u);
  EXPECT_EQ(0, svc__wake(&seq_, 2, &sleeping_, fd_[0]));
  EXPECT_EQ(atomic_load(&seq_), 2u);
  EXPECT_EQ(1, Pending(fd_[1]));
}

TEST_F(Sockets, WakeToADeadPeer) {
  close(fd_[1]);
  fd_[1] = -1;
  atomic_store(&sleeping_, 1u);
  EXPECT_EQ(SVC_EPEERGONE, svc__wake(&seq_, 1, &sleeping_, fd_[0]));
  EXPECT_EQ(atomic_load(&seq_), 1u) << "the value is published regardless";
}

TEST_F(Sockets, WakeWithAFullSocketIsFine) {
  // A doorbell that cannot take another byte already holds a wake-up.
  ASSERT_EQ(0, fcntl(fd_[0], F_SETFL, O_NONBLOCK));
  char junk[4096] = {};
  while (send(fd_[0], junk, sizeof junk, MSG_DONTWAIT) > 0) {
  }
  atomic_store(&sleeping_, 1u);
  EXPECT_EQ(0, svc__wake(&seq_, 1, &sleeping_, fd_[0]));
}

TEST_F(Sockets, DrainEmptiesTheDoorbell) {
  char b[100] = {};
  ASSERT_EQ(100, send(fd_[0], b, sizeof b, 0));
  EXPECT_EQ(0, svc__doorbell_drain(fd_[1]));
  EXPECT_EQ(0, Pending(fd_[1]));
  EXPECT_EQ(0, svc__doorbell_drain(fd_[1])) << "nothing pending is fine";
  close(fd_[0]);
  fd_[0] = -1;
  EXPECT_EQ(SVC_EPEERGONE, svc__doorbell_drain(fd_[1]));
}

// ---- wait ----

TEST_F(Sockets, WaitReturnsWhenAlreadyChanged) {
  atomic_store(&seq_, 3u);
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_BLOCK);
  EXPECT_EQ(0,
            svc__wait(&w, &seq_, 2, &sleeping_, fd_[1], svc__deadline(1000)));
  EXPECT_EQ(atomic_load(&sleeping_), 0u);
}

TEST_F(Sockets, WaitTimesOut) {
  for (svc_wait_policy p : {SVC_WAIT_ADAPTIVE, SVC_WAIT_SPIN, SVC_WAIT_BLOCK}) {
    svc__waiter w;
    svc__waiter_init(&w, p);
    auto t = Clock::now();
    EXPECT_EQ(SVC_ETIMEDOUT,
              svc__wait(&w, &seq_, 0, &sleeping_, fd_[1], svc__deadline(80)))
        << p;
    double ms = MsSince(t);
    EXPECT_GE(ms, 75.0) << p;
    EXPECT_LT(ms, 2000.0) << p;
    EXPECT_EQ(atomic_load(&sleeping_), 0u) << "cleared after the wait";
  }
}

TEST_F(Sockets, SleepingWaiterIsWokenByTheDoorbell) {
  // If the doorbell did not work, each wait would last until the waiter's
  // periodic re-check (100 ms); ten doorbell wake-ups take microseconds each.
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_BLOCK);
  double total_ms = 0;
  for (uint32_t i = 0; i < 10; i++) {
    std::thread waker([&, i] {
      // Wake only once the waiter said it sleeps.
      auto t = Clock::now();
      while (!atomic_load(&sleeping_) && MsSince(t) < 5000)
        std::this_thread::yield();
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      svc__wake(&seq_, i + 1, &sleeping_, fd_[0]);
    });
    auto t = Clock::now();
    int rc = svc__wait(&w, &seq_, i, &sleeping_, fd_[1], svc__deadline(10000));
    total_ms += MsSince(t);
    waker.join();
    ASSERT_EQ(0, rc) << i;
  }
  EXPECT_LT(total_ms, 500.0) << "doorbell wake-ups are not reaching the waiter";
}

// A waiter on seq_ that sleeps, then is rung by a peer announcing the copy
// of call 7 (the early ring of transport_shm.c's announce_copy).
class AnnouncedCopy : public Sockets {
protected:
  void StartWaiter(svc_wait_policy policy) {
    svc__waiter_init(&w_, policy);
    waiter_ = std::thread([this] {
      rc_ = svc__wait_hinted(&w_, &seq_, 0, &sleeping_, fd_[1],
                             svc__deadline(10000), &copy_for_, 7, &eta_ns_);
    });
    ASSERT_TRUE(Slept()) << "the waiter never slept";
  }
  bool Slept() {
    auto t = Clock::now();
    while (!atomic_load(&sleeping_) && MsSince(t) < 5000)
      std::this_thread::yield();
    return atomic_load(&sleeping_) == 1;
  }
  void AnnounceAndRing() {
    atomic_store(&eta_ns_, (uint64_t)svc__now_ns() + 5000000000u);
    atomic_store(&copy_for_, 7u);
    ASSERT_EQ(0, svc__ring(&sleeping_, fd_[0]));
  }
  void PostAndJoin() {
    ASSERT_EQ(0, svc__wake(&seq_, 1, &sleeping_, fd_[0]));
    waiter_.join();
    EXPECT_EQ(0, rc_);
  }
  void TearDown() override {
    if (waiter_.joinable()) { // a failed assertion: let it finish
      svc__wake(&seq_, 1, &sleeping_, fd_[0]);
      waiter_.join();
    }
    Sockets::TearDown();
  }
  svc__waiter w_;
  _Atomic uint32_t copy_for_ = 0;
  _Atomic uint64_t eta_ns_ = 0;
  int rc_ = -1;
  std::thread waiter_;
};

// Regression (issue 11): a peer that starts copying a large message rings
// a sleeping waiter at once, so the wake-up overlaps the copy. The waiter
// must then spin through the announced copy, flag cleared, not go back to
// sleep and make the peer ring a second time when the message is posted.
TEST_F(AnnouncedCopy, WaiterRungAtAnAnnouncedCopySpinsThroughIt) {
  ASSERT_NO_FATAL_FAILURE(StartWaiter(SVC_WAIT_ADAPTIVE));
  ASSERT_NO_FATAL_FAILURE(AnnounceAndRing());
  // Well inside SVC__BUSY_SPIN_MAX_NS (20 ms), after which it may sleep.
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_EQ(0u, atomic_load(&sleeping_)) << "went back to sleep mid-copy";
  ASSERT_NO_FATAL_FAILURE(PostAndJoin());
  EXPECT_EQ(0, Pending(fd_[1])) << "the post rang a second time";
}

// A waiter told never to spin sleeps through an announced copy too.
TEST_F(AnnouncedCopy, BlockPolicyDoesNotSpinThroughACopy) {
  ASSERT_NO_FATAL_FAILURE(StartWaiter(SVC_WAIT_BLOCK));
  ASSERT_NO_FATAL_FAILURE(AnnounceAndRing());
  EXPECT_TRUE(Slept()) << "a blocking waiter spun";
  ASSERT_NO_FATAL_FAILURE(PostAndJoin());
}

TEST_F(Sockets, AdaptiveWaiterCatchesAFastPeer) {
  svc__waiter w;
  svc__waiter_init(&w, SVC_WAIT_ADAPTIVE);
  std::thread peer([&] {
    for (uint32_t i = 1; i <= 500; i++) {
      while (atomic_load(&seq_) != 2 * i - 1)
        sched_yield(); // the ping
      svc__wake(&seq_, 2 * i, &sleeping_, fd_[0]);
    }
  });
  int failures = 0;
  for (uint32_t i = 1; i <= 500; i++) {
    atomic_store(&seq_, 2 * i - 1);
    if (svc__wait(&w, &seq_, 2 * i - 1, &sleeping_, fd_[1],
                  svc__deadline(10000)) != 0)
      failures++;
  }
  peer.join();
  EXPECT_EQ(failures, 0);
}

class PeerDeath : public Sockets,
                  public ::testing::WithParamInterface<svc_wait_policy> {};

TEST_P(PeerDeath, NoticedPromptly) {
  // The design asks for 100 ms whether the waiter spins or sleeps; on a
  // shared 2-core machine we allow 10x.
  svc__waiter w;
  svc__waiter_init(&w, GetParam());
  std::thread killer([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    close(fd_[0]);
    fd_[0] = -1;
  });
  auto t = Clock::now();
  int rc = svc__wait(&w, &seq_, 0, &sleeping_, fd_[1], svc__deadline(20000));
  double ms = MsSince(t) - 150;
  killer.join();
  EXPECT_EQ(SVC_EPEERGONE, rc);
  EXPECT_LT(ms, 1000.0);
  RecordProperty("notice_ms", std::to_string(ms));
}

TEST_P(PeerDeath, ReplyBeforeHangUpWins) {
  svc__waiter w;
  svc__waiter_init(&w, GetParam());
  atomic_store(&sleeping_, 1u);
  svc__wake(&seq_, 1, &sleeping_, fd_[0]);
  atomic_store(&sleeping_, 0u);
  close(fd_[0]);
  fd_[0] = -1;
  EXPECT_EQ(0,
            svc__wait(&w, &seq_, 0, &sleeping_, fd_[1], svc__deadline(5000)));
}

INSTANTIATE_TEST_SUITE_P(
    Policies, PeerDeath,
    ::testing::Values(SVC_WAIT_ADAPTIVE, SVC_WAIT_SPIN, SVC_WAIT_BLOCK),
    [](const ::testing::TestParamInfo<svc_wait_policy> &i) {
      return std::string(i.param == SVC_WAIT_ADAPTIVE ? "adaptive"
                         : i.param == SVC_WAIT_SPIN   ? "spin"
                                                      : "block");
    });

} // namespace
