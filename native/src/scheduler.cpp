#include "scheduler.h"

#include <chrono>
#include <cstdlib>
#include <deque>
#include <new>
#include <queue>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "model.h"
#include "persist.h"

namespace hcssim {

namespace {

using Clock = std::chrono::steady_clock;

// ------------------------------------------------------------------------------------------------
// Worker pool: a small fixed set of threads (kDefaultWorkers, env HCSSIM_WORKER_THREADS 1..64),
// started on first use, that apply operations and invoke their completion callbacks. A thread
// inside a callback is busy until the callback returns (a koffi callback returns once the JS main
// thread has run it): with every worker in a callback, later completions wait, as they would for
// any bounded thread pool in HCS. Fewer threads than operations in flight means fewer futex wakes
// and context switches per operation than a thread per operation. Threads are detached and never
// destroyed.

const int kDefaultWorkers = 4;

void runOp(const OpPtr &op);

int configuredWorkers() {
  const char *env = std::getenv("HCSSIM_WORKER_THREADS");
  if (env && *env) {
    char *end = nullptr;
    long n = std::strtol(env, &end, 10);
    if (end && *end == 0 && n >= 1 && n <= 64) return static_cast<int>(n);
  }
  return kDefaultWorkers;
}

struct Pool {
  std::mutex m;
  std::condition_variable cv;
  std::deque<OpPtr> tasks;
  int idle = 0;
  int total = 0;
  const int size = configuredWorkers();

  // Never called with a scheduler lock held: a wake-up is a system call, and a woken worker that
  // finds the scheduler lock taken would only block on it again (two futex round trips per
  // operation instead of one).
  void submit(OpPtr op) {
    bool spawn, wake;
    {
      std::lock_guard<std::mutex> lock(m);
      tasks.push_back(std::move(op));
      // Threads are started lazily, up to the pool size.
      spawn = static_cast<int>(tasks.size()) > idle && total < size;
      if (spawn) ++total;
      // A worker that is not idle takes the task when it is done with its own (it looks at the
      // queue before it waits): wake one only if one waits.
      wake = idle > 0;
    }
    if (spawn) {
      try {
        std::thread([this] { loop(); }).detach();
        return;
      } catch (...) {
        std::lock_guard<std::mutex> lock(m);
        --total;  // an existing worker will pick the task up
        wake = true;
      }
    }
    if (wake) cv.notify_one();
  }

  void loop() {
    std::unique_lock<std::mutex> lock(m);
    while (true) {
      ++idle;
      cv.wait(lock, [this] { return !tasks.empty(); });
      --idle;
      OpPtr op = std::move(tasks.front());
      tasks.pop_front();
      lock.unlock();
      runOp(op);
      op = nullptr;
      lock.lock();
    }
  }
};

Pool &pool() {
  static Pool *p = new Pool();
  return *p;
}

// ------------------------------------------------------------------------------------------------
// Scheduler

struct TimerEntry {
  Clock::time_point due;
  uint64_t seq;
  OpPtr op;
  bool operator>(const TimerEntry &o) const { return due != o.due ? due > o.due : seq > o.seq; }
};

struct Scheduler {
  std::mutex m;
  std::condition_variable timerCv;
  std::priority_queue<TimerEntry, std::vector<TimerEntry>, std::greater<TimerEntry>> timers;
  std::deque<OpPtr> fifo;
  std::unordered_set<OpPtr> pending;  // phases Hung, Fifo, Timer
  int limit = 0;
  int executing = 0;
  int maxExecuting = 0;
  uint64_t seq = 0;
  bool timerThread = false;
};

Scheduler &sched() {
  static Scheduler *s = new Scheduler();
  return *s;
}

struct OpTable {
  std::mutex m;
  std::unordered_map<uintptr_t, OpPtr> ops;
  uintptr_t next = 0x10000;
};

OpTable &opTable() {
  static OpTable *t = new OpTable();
  return *t;
}

// Operations made ready under the scheduler lock, handed to the pool once it is released.
// Declared before the lock guard in a scope, so that its destructor runs after the unlock.
class Ready {
 public:
  Ready() = default;
  Ready(const Ready &) = delete;
  Ready &operator=(const Ready &) = delete;
  ~Ready() {
    if (first_) pool().submit(std::move(first_));
    for (auto &op : more_) pool().submit(std::move(op));
  }
  void add(const OpPtr &op) {
    if (!first_) first_ = op;
    else more_.push_back(op);
  }

 private:
  OpPtr first_;
  std::vector<OpPtr> more_;
};

void dispatchLocked(const OpPtr &op, Ready &ready) {
  if (op->phase == Operation::Phase::Hung || op->phase == Operation::Phase::Fifo) sched().pending.erase(op);
  op->phase = Operation::Phase::Dispatched;
  ready.add(op);
}

void timerLoop() {
  Scheduler &s = sched();
  std::unique_lock<std::mutex> lock(s.m);
  while (true) {
    if (s.timers.empty()) {
      s.timerCv.wait(lock);
      continue;
    }
    auto due = s.timers.top().due;
    if (Clock::now() < due) {
      s.timerCv.wait_until(lock, due);
      continue;
    }
    OpPtr op = s.timers.top().op;
    s.timers.pop();
    if (op->phase != Operation::Phase::Timer) continue;
    lock.unlock();
    {
      Ready ready;
      std::lock_guard<std::mutex> relock(s.m);
      if (op->phase == Operation::Phase::Timer) dispatchLocked(op, ready);
    }
    lock.lock();
  }
}

void beginExecutionLocked(const OpPtr &op, Ready &ready) {
  Scheduler &s = sched();
  ++s.executing;
  if (s.executing > s.maxExecuting) s.maxExecuting = s.executing;
  op->holdsSlot = true;
  if (op->latencyMs <= 0) {
    dispatchLocked(op, ready);
    return;
  }
  op->phase = Operation::Phase::Timer;
  auto due = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(op->latencyMs * 1000.0));
  s.timers.push(TimerEntry{due, ++s.seq, op});
  if (!s.timerThread) {
    s.timerThread = true;
    std::thread(timerLoop).detach();
  }
  s.timerCv.notify_one();
}

void admitWaitingLocked(Ready &ready) {
  Scheduler &s = sched();
  while ((s.limit == 0 || s.executing < s.limit) && !s.fifo.empty()) {
    OpPtr op = s.fifo.front();
    s.fifo.pop_front();
    if (op->phase == Operation::Phase::Fifo) beginExecutionLocked(op, ready);
  }
}

// Starts `op` now if the concurrency limit allows, else queues it (FIFO).
void admitLocked(const OpPtr &op, Ready &ready) {
  Scheduler &s = sched();
  if (s.limit == 0 || s.executing < s.limit) {
    beginExecutionLocked(op, ready);
  } else {
    op->phase = Operation::Phase::Fifo;
    s.pending.insert(op);
    s.fifo.push_back(op);
  }
}

void admit(const OpPtr &op, bool hang) {
  Scheduler &s = sched();
  Ready ready;
  std::lock_guard<std::mutex> lock(s.m);
  if (hang) {
    op->phase = Operation::Phase::Hung;
    s.pending.insert(op);
    return;
  }
  admitLocked(op, ready);
}

// Moves a queued op straight to the pool (cancel / terminate). Returns false if it was already dispatched.
bool expedite(const OpPtr &op) {
  Scheduler &s = sched();
  Ready ready;
  std::lock_guard<std::mutex> lock(s.m);
  if (op->phase != Operation::Phase::Hung && op->phase != Operation::Phase::Fifo && op->phase != Operation::Phase::Timer)
    return false;
  dispatchLocked(op, ready);
  return true;
}

void releaseSlot(const OpPtr &op) {
  Scheduler &s = sched();
  Ready ready;
  std::lock_guard<std::mutex> lock(s.m);
  if (!op->holdsSlot) return;
  op->holdsSlot = false;
  --s.executing;
  admitWaitingLocked(ready);
}

std::string defaultMessage(HRESULT hr) {
  switch (hr) {
    case E_ABORT_HR: return "The operation was canceled.";
    case HCS_E_TERMINATED: return "The operation was terminated (simulator reset).";
    case HCS_E_FAIL: return "Unspecified error (injected fault).";
    default: return "The operation failed.";
  }
}

void finish(const OpPtr &op, OpOutcome out) {
  if (op->traceWanted && traceEnabled())
    traceCall(op->fn, op->traceHasId ? &op->traceId : nullptr, op->traceDoc ? op->traceDoc->traced() : nullptr, out.hr);
  op->traceDoc = nullptr;
  std::u16string doc;
  bool hasDoc = false;
  try {
    if (out.hr < 0) {
      doc = utf8ToUtf16(errorDocument(out.hr, out.message.empty() ? defaultMessage(out.hr) : out.message, op->fn));
      hasDoc = true;
    } else if (!out.doc.empty()) {
      doc = utf8ToUtf16(out.doc);
      hasDoc = true;
    }
  } catch (...) {
    hasDoc = false;
  }
  releaseSlot(op);
  HCS_OPERATION_COMPLETION cb = nullptr;
  const void *ctx = nullptr;
  {
    std::lock_guard<std::mutex> lock(op->m);
    op->st = Operation::St::Done;
    op->hr = out.hr;
    op->doc = std::move(doc);
    op->hasDoc = hasDoc;
    if (!op->closed) {
      cb = op->callback;
      ctx = op->context;
    }
    op->cv.notify_all();
  }
  // No simulator lock is held here: the callback may call back into the library.
  if (cb) cb(reinterpret_cast<HCS_OPERATION>(op->handle), const_cast<void *>(ctx));
}

void runOp(const OpPtr &op) {
  bool run = false;
  OpOutcome out;
  {
    std::lock_guard<std::mutex> lock(op->m);
    if (op->terminated) {
      out.hr = HCS_E_TERMINATED;
    } else if (op->cancelRequested) {
      out.hr = E_ABORT_HR;
    } else {
      op->st = Operation::St::Running;
      run = true;
    }
  }
  if (run) {
    try {
      out = op->work();
    } catch (const HcsFailure &f) {
      out.hr = f.hr;
      out.doc.clear();
      out.message = f.message;
    } catch (const std::bad_alloc &) {
      out.hr = HCS_E_OUTOFMEMORY;
      out.message = "out of memory";
    } catch (...) {
      out.hr = HCS_E_FAIL;
      out.message = "internal simulator error";
    }
  }
  if (!run && op->onNotApplied) {
    try {
      op->onNotApplied();
    } catch (...) {
    }
  }
  op->work = nullptr;
  op->onNotApplied = nullptr;
  finish(op, std::move(out));
}

}  // namespace

HCS_OPERATION registerOperation(const void *context, HCS_OPERATION_COMPLETION callback) {
  try {
    auto op = std::make_shared<Operation>();
    op->context = context;
    op->callback = callback;
    OpTable &t = opTable();
    std::lock_guard<std::mutex> lock(t.m);
    op->handle = t.next;
    t.next += 16;
    t.ops[op->handle] = op;
    return reinterpret_cast<HCS_OPERATION>(op->handle);
  } catch (...) {
    return nullptr;
  }
}

OpPtr findOperation(HCS_OPERATION handle) {
  OpTable &t = opTable();
  std::lock_guard<std::mutex> lock(t.m);
  auto it = t.ops.find(reinterpret_cast<uintptr_t>(handle));
  return it == t.ops.end() ? nullptr : it->second;
}

bool closeOperation(HCS_OPERATION handle) {
  OpPtr op;
  {
    OpTable &t = opTable();
    std::lock_guard<std::mutex> lock(t.m);
    auto it = t.ops.find(reinterpret_cast<uintptr_t>(handle));
    if (it == t.ops.end()) return false;
    op = it->second;
    t.ops.erase(it);
  }
  std::lock_guard<std::mutex> lock(op->m);
  op->closed = true;
  op->callback = nullptr;
  op->context = nullptr;
  return true;
}

bool operationStarted(const OpPtr &op) {
  std::lock_guard<std::mutex> lock(op->m);
  return op->st != Operation::St::NotStarted;
}

HRESULT startOperation(const OpPtr &op, StartSpec spec) {
  {
    std::lock_guard<std::mutex> lock(op->m);
    if (op->st != Operation::St::NotStarted) return HCS_E_OPERATION_ALREADY_STARTED;
    op->st = Operation::St::Queued;
    op->fn = std::move(spec.fn);
    op->work = std::move(spec.work);
    op->onNotApplied = std::move(spec.onNotApplied);
    op->latencyMs = spec.latencyMs;
    op->traceWanted = spec.traceWanted;
    op->traceHasId = spec.traceHasId;
    op->traceId = std::move(spec.traceId);
    op->traceDoc = std::move(spec.traceDoc);
  }
  // The fields above are read by the worker only after admission (scheduler / pool mutex hand-off).
  admit(op, spec.hang);
  return HCS_S_OK;
}

HRESULT cancelOperation(const OpPtr &op) {
  {
    std::lock_guard<std::mutex> lock(op->m);
    if (op->st == Operation::St::NotStarted) return HCS_E_OPERATION_NOT_STARTED;
    if (op->st != Operation::St::Queued || op->cancelRequested) return HCS_S_OK;
    op->cancelRequested = true;
  }
  expedite(op);
  return HCS_S_OK;
}

void terminateQueuedOperations() {
  std::vector<OpPtr> ops;
  {
    Scheduler &s = sched();
    std::lock_guard<std::mutex> lock(s.m);
    ops.assign(s.pending.begin(), s.pending.end());
  }
  for (const auto &op : ops) {
    {
      std::lock_guard<std::mutex> lock(op->m);
      if (op->st != Operation::St::Queued) continue;
      op->terminated = true;
    }
    expedite(op);
  }
}

void releaseHungOperations() {
  Scheduler &s = sched();
  Ready ready;
  std::lock_guard<std::mutex> lock(s.m);
  std::vector<OpPtr> hung;
  for (const auto &op : s.pending)
    if (op->phase == Operation::Phase::Hung) hung.push_back(op);
  // Through admission like any new operation (latency, concurrency limit).
  for (const auto &op : hung) {
    s.pending.erase(op);
    op->phase = Operation::Phase::None;
    admitLocked(op, ready);
  }
}

void setConcurrencyLimit(int limit) {
  Scheduler &s = sched();
  Ready ready;
  std::lock_guard<std::mutex> lock(s.m);
  s.limit = limit < 0 ? 0 : limit;
  admitWaitingLocked(ready);
}

SchedulerStats schedulerStats() {
  Scheduler &s = sched();
  std::lock_guard<std::mutex> lock(s.m);
  int waiting = 0, hung = 0;
  for (const auto &op : s.fifo)
    if (op->phase == Operation::Phase::Fifo) ++waiting;
  for (const auto &op : s.pending)
    if (op->phase == Operation::Phase::Hung) ++hung;
  int open;
  {
    OpTable &t = opTable();
    std::lock_guard<std::mutex> tl(t.m);
    open = static_cast<int>(t.ops.size());
  }
  return SchedulerStats{s.executing, s.maxExecuting, waiting, hung, open};
}

int workerThreadCount() { return pool().size; }

void resetSchedulerStats() {
  Scheduler &s = sched();
  std::lock_guard<std::mutex> lock(s.m);
  s.maxExecuting = s.executing;
}

std::string errorDocument(HRESULT hr, const std::string &message, const std::string &fn) {
  Json ev = Json::object();
  ev.set("Message", Json::string(message));
  ev.set("Provider", Json::string("hcssim"));
  ev.set("EventId", Json::number(static_cast<uint32_t>(hr) & 0xFFFFu));
  ev.set("Source", Json::string(fn));
  Json events = Json::array();
  events.push(ev);
  Json doc = Json::object();
  doc.set("Error", Json::number(hr));
  doc.set("ErrorMessage", Json::string(message));
  doc.set("ErrorEvents", events);
  return toJson(doc);
}

}  // namespace hcssim
