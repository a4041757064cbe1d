// Concurrency limit, FIFO admission and many threads hammering the simulator.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "harness.h"
#include "scheduler.h"

using hcssim::Json;

namespace {
struct Order {
  std::mutex m;
  std::condition_variable cv;
  std::vector<int> done;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();
  std::vector<double> atMs = std::vector<double>(16, 0);  // completion time per index, from t0
};
struct Ctx {
  Order *order;
  int index;
};

// Completion callbacks held at a gate: each of the operations startGatedOperations starts counts
// itself started, blocks until `release` (called with `m` held) is true or `timeout` passes
// (counted in timedOut), counts itself finished and closes its operation.
struct CallbackGate {
  std::mutex m;
  std::condition_variable cv;
  int started = 0;
  int finished = 0;
  int timedOut = 0;
  std::chrono::seconds timeout{5};
  std::function<bool()> release;
};
// Starts `n` operations (HcsEnumerateComputeSystems) whose callbacks wait at `gate`.
void startGatedOperations(CallbackGate &gate, int n) {
  for (int i = 0; i < n; ++i) {
    HCS_OPERATION op = HcsCreateOperation(&gate, [](HCS_OPERATION o, void *c) {
      auto *g = static_cast<CallbackGate *>(c);
      std::unique_lock<std::mutex> lock(g->m);
      g->started++;
      g->cv.notify_all();
      if (!g->cv.wait_for(lock, g->timeout, g->release)) g->timedOut++;
      g->finished++;
      g->cv.notify_all();
      lock.unlock();
      HcsCloseOperation(o);
    });
    CHECK_HR(HcsEnumerateComputeSystems(nullptr, op), 0);
  }
}
void HCS_CALL record(HCS_OPERATION op, void *context) {
  auto *c = static_cast<Ctx *>(context);
  HcsCloseOperation(op);
  std::lock_guard<std::mutex> lock(c->order->m);
  c->order->done.push_back(c->index);
  c->order->atMs[c->index] = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - c->order->t0).count();
  c->order->cv.notify_all();
}
}  // namespace

TEST(concurrency_limit_fifo) {
  t::configure(R"({"latencyMs":15,"concurrency":2})");
  hcssim::resetSchedulerStats();
  Order order;
  std::vector<Ctx> ctx(8);
  auto t0 = order.t0;
  for (int i = 0; i < 8; ++i) {
    ctx[i] = Ctx{&order, i};
    HCS_OPERATION op = HcsCreateOperation(&ctx[i], record);
    CHECK_HR(HcsEnumerateComputeSystems(nullptr, op), 0);
  }
  CHECK(hcssim::schedulerStats().waiting == 6);
  {
    std::unique_lock<std::mutex> lock(order.m);
    CHECK(order.cv.wait_for(lock, std::chrono::seconds(5), [&] { return order.done.size() == 8; }));
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  CHECK(ms >= 4 * 15 - 2);  // 4 waves of 2
  CHECK_EQ(hcssim::schedulerStats().maxExecuting, 2);
  // FIFO admission: the k-th wave of 2 (submission order) starts when the one before it has had
  // its latency, so it completes no earlier than (k + 1) latencies after the submission. (The
  // completion order across waves is not asserted: a wave's slots are free at its deadline, and a
  // stalled worker on a loaded host may report an earlier wave after a later one.)
  for (int i = 0; i < 8; ++i) CHECK(order.atMs[i] >= (i / 2 + 1) * 15 - 1);
  // raising the limit admits waiting operations
  t::configure(R"({"latencyMs":300,"concurrency":1})");  // long: the first op is still in its latency below
  Order o2;
  std::vector<Ctx> c2(4);
  for (int i = 0; i < 4; ++i) {
    c2[i] = Ctx{&o2, i};
    HCS_OPERATION op = HcsCreateOperation(&c2[i], record);
    CHECK_HR(HcsEnumerateComputeSystems(nullptr, op), 0);
  }
  CHECK_EQ(hcssim::schedulerStats().waiting, 3);
  t::configure(R"({"concurrency":0})");
  CHECK_EQ(hcssim::schedulerStats().waiting, 0);  // admitted at once, all four in their latency
  std::unique_lock<std::mutex> lock(o2.m);
  CHECK(o2.cv.wait_for(lock, std::chrono::seconds(5), [&] { return o2.done.size() == 4; }));
}

TEST(callbacks_blocking_run_on_every_worker) {
  // As many callbacks as there are workers block until all of them have started: each runs on
  // its own pool thread at the same time (at most that many callbacks run at once).
  t::configure(R"({"latencyMs":1})");
  CallbackGate gate;
  const int n = hcssim::workerThreadCount();
  CHECK(n >= 2);
  gate.timeout = std::chrono::seconds(5);
  gate.release = [&gate, n] { return gate.started >= n; };
  startGatedOperations(gate, n);
  std::unique_lock<std::mutex> lock(gate.m);
  CHECK(gate.cv.wait_for(lock, std::chrono::seconds(10), [&] { return gate.finished == n; }));
  CHECK(gate.timedOut == 0);
}

TEST(blocked_callbacks_do_not_hold_hcs_work) {
  // Every callback thread blocked in a client's callback (koffi: the JS main thread is busy): HCS
  // still applies and completes later operations (results, waits, concurrency slots); only their
  // callbacks wait, and run once a callback returns — except that of an operation closed meanwhile.
  t::configure(R"({"latencyMs":1,"concurrency":2})");
  hcssim::resetSchedulerStats();
  struct Gate : CallbackGate {
    bool open = false;
    std::vector<int> delivered;
  } gate;
  const int n = hcssim::workerThreadCount();
  gate.timeout = std::chrono::seconds(20);
  gate.release = [&gate] { return gate.open; };
  startGatedOperations(gate, n);
  {
    std::unique_lock<std::mutex> lock(gate.m);
    CHECK(gate.cv.wait_for(lock, std::chrono::seconds(10), [&] { return gate.started == n; }));
  }
  struct Later {
    Gate *gate;
    int index;
  };
  const int m = 3 * n + 2;
  std::vector<Later> later(m);
  std::vector<HCS_OPERATION> ops(m);
  for (int i = 0; i < m; ++i) {
    later[i] = Later{&gate, i};
    ops[i] = HcsCreateOperation(&later[i], [](HCS_OPERATION o, void *c) {
      auto *l = static_cast<Later *>(c);
      HcsCloseOperation(o);
      std::lock_guard<std::mutex> lock(l->gate->m);
      l->gate->delivered.push_back(l->index);
      l->gate->cv.notify_all();
    });
    CHECK_HR(HcsEnumerateComputeSystems(nullptr, ops[i]), 0);
  }
  // Completed while every callback thread is blocked (a generous bound: a safety net only).
  for (int i = 0; i < m; ++i) {
    PWSTR doc = nullptr;
    CHECK_HR(HcsWaitForOperationResult(ops[i], 20000, &doc), 0);
    if (doc) LocalFree(doc);
  }
  CHECK_EQ(hcssim::schedulerStats().executing, 0);
  CHECK_EQ(hcssim::schedulerStats().maxExecuting, 2);
  HcsCloseOperation(ops[0]);  // completed, callback not delivered yet: never called now
  {
    std::unique_lock<std::mutex> lock(gate.m);
    CHECK(gate.delivered.empty());
    gate.open = true;
    gate.cv.notify_all();
    CHECK(gate.cv.wait_for(lock, std::chrono::seconds(20),
                           [&] { return gate.finished == n && static_cast<int>(gate.delivered.size()) == m - 1; }));
    CHECK_EQ(gate.timedOut, 0);
    std::vector<int> seen(m, 0);
    for (int i : gate.delivered) seen[i]++;
    CHECK_EQ(seen[0], 0);
    for (int i = 1; i < m; ++i) CHECK_EQ(seen[i], 1);
  }
}

TEST(slot_free_at_its_deadline) {
  // An operation holds its concurrency slot for its latency, not until a worker has applied it:
  // with its apply held up (a crash fault whose SystemExited callback, run on the applying worker,
  // blocks), the operation waiting behind it (concurrency 1) is admitted at the deadline and
  // completes while the first is still being applied.
  HCS_SYSTEM s = t::createRunning("slot-deadline", t::lcowDoc());
  struct Gate {
    std::mutex m;
    std::condition_variable cv;
    bool entered = false;
    bool open = false;
    int timedOut = 0;
  } gate;
  CHECK_HR(HcsSetComputeSystemCallback(s, 0, &gate, [](HCS_EVENT *, void *c) {
    auto *g = static_cast<Gate *>(c);
    std::unique_lock<std::mutex> lock(g->m);
    g->entered = true;
    g->cv.notify_all();
    if (!g->cv.wait_for(lock, std::chrono::seconds(20), [&] { return g->open; })) g->timedOut++;
  }), 0);
  t::configure(R"({"latencyMs":5,"concurrency":1,"faults":[{"fn":"HcsModifyComputeSystem","nth":1,"crash":true}]})");
  hcssim::resetSchedulerStats();
  HCS_OPERATION a = HcsCreateOperation(nullptr, nullptr);
  auto req = t::u16(R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"x","Path":"/x","Port":564}})");
  CHECK_HR(HcsModifyComputeSystem(s, a, req.c_str(), nullptr), 0);
  HCS_OPERATION b = HcsCreateOperation(nullptr, nullptr);
  CHECK_HR(HcsEnumerateComputeSystems(nullptr, b), 0);
  {
    std::unique_lock<std::mutex> lock(gate.m);
    CHECK(gate.cv.wait_for(lock, std::chrono::seconds(10), [&] { return gate.entered; }));
  }
  PWSTR doc = nullptr;
  CHECK_HR(HcsWaitForOperationResult(b, 20000, &doc), 0);  // a safety net, not a timing
  if (doc) LocalFree(doc);
  doc = nullptr;
  CHECK_HR(HcsGetOperationResult(a, &doc), HCS_E_OPERATION_PENDING);  // still being applied
  CHECK_EQ(hcssim::schedulerStats().maxExecuting, 1);
  {
    std::lock_guard<std::mutex> lock(gate.m);
    gate.open = true;
    gate.cv.notify_all();
  }
  CHECK_HR(HcsWaitForOperationResult(a, 20000, &doc), HCS_E_INVALID_STATE);  // the VM crashed first
  if (doc) LocalFree(doc);
  CHECK_EQ(gate.timedOut, 0);
  HcsCloseOperation(a);
  HcsCloseOperation(b);
  HcsCloseComputeSystem(s);
}

TEST(hammer_modify_from_many_threads) {
  HCS_SYSTEM s = t::createRunning("hammer", t::lcowDoc());
  t::configure(R"({"latencyMs":0.2,"jitterMs":0.3})");
  const int threads = 8, rounds = 60;
  std::atomic<int> failures{0};
  std::vector<std::thread> pool;
  for (int th = 0; th < threads; ++th) {
    pool.emplace_back([&, th] {
      for (int r = 0; r < rounds; ++r) {
        int lun = th * 7 + r % 7;  // distinct LUNs per thread (< 64)
        std::string rp = std::string("VirtualMachine/Devices/Scsi/") + t::kCtrl0 + "/Attachments/" + std::to_string(lun);
        std::string mp = "/run/mounts/t" + std::to_string(th) + "/" + std::to_string(r);
        std::string add = R"({"ResourcePath":")" + rp + R"(","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\p)" +
                          std::to_string(th) + R"("},"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":")" +
                          mp + R"(","Lun":)" + std::to_string(lun) + "}}}";
        std::string unmount = R"({"GuestRequest":{"RequestType":"Remove","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":")" + mp + R"("}}})";
        std::string remove = R"({"ResourcePath":")" + rp + R"(","RequestType":"Remove"})";
        std::string p9 = R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"t)" +
                         std::to_string(th) + "-" + std::to_string(r) + R"(","Path":"C:\\x","Port":564}})";
        std::string p9r = R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Remove","Settings":{"Name":"t)" +
                          std::to_string(th) + "-" + std::to_string(r) + R"("}})";
        if (t::modify(s, add).hr != 0) failures++;
        if (t::modify(s, p9).hr != 0) failures++;
        if (t::modify(s, unmount).hr != 0) failures++;
        if (t::modify(s, remove).hr != 0) failures++;
        if (t::modify(s, p9r).hr != 0) failures++;
        if (r % 10 == 0) t::simState(s);
      }
    });
  }
  for (auto &th : pool) th.join();
  CHECK_EQ(failures.load(), 0);
  CHECK_EQ(t::simState(s).get("HotAdded")->asInt(), 0);
  HcsCloseComputeSystem(s);
}

TEST(concurrent_cancel_close_race) {
  // cancel / close / wait racing with completion: every callback at most once, nothing crashes
  t::configure(R"({"latencyMs":0.5,"jitterMs":1})");
  std::atomic<int> calls{0};
  std::vector<std::thread> pool;
  for (int th = 0; th < 4; ++th) {
    pool.emplace_back([&, th] {
      for (int i = 0; i < 150; ++i) {
        HCS_OPERATION op = HcsCreateOperation(&calls, [](HCS_OPERATION, void *c) { ++*static_cast<std::atomic<int> *>(c); });
        HcsEnumerateComputeSystems(nullptr, op);
        if ((i + th) % 3 == 0) HcsCancelOperation(op);
        if ((i + th) % 2 == 0) HcsWaitForOperationResult(op, 5, nullptr);
        HcsCloseOperation(op);
      }
    });
  }
  for (auto &th : pool) th.join();
  CHECK(calls.load() <= 600);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
}
