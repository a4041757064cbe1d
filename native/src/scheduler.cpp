#include "scheduler.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <deque>
#include <new>
#include <pthread.h>
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
// Worker pool: a small fixed number of threads that apply operations (kDefaultWorkers, env
// HCSSIM_WORKER_THREADS 1..64), and as many completion callbacks at most running at once. One set
// of threads does both; started on first use, detached, never destroyed.
//
// A thread that applied an operation completes it (result, slot, waiters woken) before anything
// else, then invokes its callback itself when fewer than `size` callbacks are running and none
// waits to be delivered (no thread hop on the fast path); otherwise the callback waits, in FIFO
// order, for a thread that returns from a callback.
//
// Operations to apply go to an idle thread while fewer than `size` threads are applying or calling
// back — a plain pool of `size`. A thread inside a callback (a koffi callback returns only once the
// JS main thread has run it) is not a worker, though: when operations wait to be applied and no
// thread is applying, a check about kStarvationCheck later (on the timer thread) hands them to
// idle or new threads, up to `size` applying (at most 2 × size threads in all), unless some were
// started meanwhile (then it looks again later). So HCS work waits on a client's callbacks for
// about that long at most. (On Windows vmcompute, another process, applies operations, so its work
// never waits on a client's callbacks; which computecore thread calls back is not documented.) The check is
// neither immediate nor made on the submitting thread: that is the client's (for the binding, the
// JS main thread every blocked callback waits for), and replacement threads woken for every short
// wait cost the client CPU on a 2-vCPU host (64 calls in flight) for work it cannot observe before
// its callbacks return.
//
// Jobs are handed to a thread directly (its `job` set under the pool lock, then its own condition
// variable notified after the unlock), so the counts below are always exact and a wake-up is never
// lost or wasted.

const int kDefaultWorkers = 4;
const auto kStarvationCheck = std::chrono::milliseconds(10);

// Applies the operation and completes it (no callback); returns true if a callback is to be invoked.
bool applyOp(const OpPtr &op);
// Invokes the completion callback of a completed operation (unless the operation was closed). The
// thread lets go of the operation before the call: the client usually closes it from its callback,
// so it is freed there, by the thread that allocated it (see "Memory" in complete()).
void deliverOp(OpPtr op);
// Has the timer thread call Pool::check about kStarvationCheck from now.
void armPoolCheck();

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
  enum class Kind { Apply, Deliver };
  struct Thread {
    std::condition_variable cv;
    OpPtr job;  // guarded by the pool mutex; set by whoever wakes this thread
    Kind kind = Kind::Apply;
  };
  // A few threads inline, more on the heap (usually one thread is woken at a time).
  struct ThreadList {
    Thread *inl[4];
    size_t n = 0;
    std::vector<Thread *> more;
    void push_back(Thread *t) {
      if (n < 4) inl[n++] = t;
      else more.push_back(t);
    }
    bool empty() const { return n == 0; }
    template <typename F>
    void each(F f) const {
      for (size_t i = 0; i < n; ++i) f(inl[i]);
      for (Thread *t : more) f(t);
    }
  };
  // Threads to wake or start once the pool lock is released.
  struct Starts {
    ThreadList wake;
    ThreadList spawn;
    bool armCheck = false;
  };

  std::mutex m;
  std::deque<OpPtr> tasks;       // operations to apply
  std::deque<OpPtr> deliveries;  // completed operations whose callback waits for a thread
  std::vector<Thread *> idle;    // LIFO: the most recently active thread first
  int applying = 0;
  int calling = 0;  // threads = applying + calling + idle.size() (never more than 2 × size)
  bool checkArmed = false;
  uint64_t started = 0;    // operations handed to a thread to apply, ever
  uint64_t checkMark = 0;  // `started` when the check was armed
  const int size = configuredWorkers();

  void submit(OpPtr &first, std::vector<OpPtr> &more) {
    Starts starts;
    {
      std::lock_guard<std::mutex> lock(m);
      tasks.push_back(std::move(first));
      for (auto &op : more) tasks.push_back(std::move(op));
      balanceLocked(starts, false);
    }
    run(starts);
  }

  // The starvation check (timer thread): if no operation was started since the check was armed
  // and some still wait with no thread applying, they go to idle or new threads, up to `size`
  // applying, whatever the number of threads in callbacks. If some were started (threads came back
  // from callbacks and took them), the check is armed again while operations still wait.
  void check() {
    Starts starts;
    {
      std::lock_guard<std::mutex> lock(m);
      checkArmed = false;
      balanceLocked(starts, started == checkMark);
    }
    run(starts);
  }

  // Hands queued jobs to idle (or new) threads while there is capacity for them (`replace`: threads
  // in callbacks do not count), and asks for a check if operations are left with no thread applying.
  void balanceLocked(Starts &starts, bool replace) {
    while (!tasks.empty() && applying < size && (replace || applying + calling < size)) {
      assignLocked(starts, Kind::Apply, std::move(tasks.front()));
      tasks.pop_front();
    }
    while (!deliveries.empty() && calling < size) {
      assignLocked(starts, Kind::Deliver, std::move(deliveries.front()));
      deliveries.pop_front();
    }
    if (!tasks.empty() && applying == 0) armCheckLocked(starts);
  }

  // Asks for a starvation check (unless one is armed); it replaces workers only if no operation is
  // started before it runs.
  void armCheckLocked(Starts &starts) {
    if (checkArmed) return;
    checkArmed = true;
    checkMark = started;
    starts.armCheck = true;
  }

  void assignLocked(Starts &starts, Kind kind, OpPtr op) {
    Thread *t;
    if (!idle.empty()) {
      t = idle.back();
      idle.pop_back();
      starts.wake.push_back(t);
    } else {
      t = new Thread();  // never freed: its thread runs until the process exits
      starts.spawn.push_back(t);
    }
    t->kind = kind;
    t->job = std::move(op);
    if (kind == Kind::Apply) {
      ++applying;
      ++started;
    } else {
      ++calling;
    }
  }

  // Takes the calling thread's next job (same kind first); false: none, the thread goes idle.
  bool nextLocked(Thread *self) {
    Kind first = self->kind;
    for (int i = 0; i < 2; ++i) {
      Kind k = i == 0 ? first : (first == Kind::Apply ? Kind::Deliver : Kind::Apply);
      std::deque<OpPtr> &q = k == Kind::Apply ? tasks : deliveries;
      int &n = k == Kind::Apply ? applying : calling;
      if (!q.empty() && n < size) {
        self->kind = k;
        self->job = std::move(q.front());
        q.pop_front();
        ++n;
        if (k == Kind::Apply) ++started;
        return true;
      }
    }
    return false;
  }

  bool pending(const Starts &starts) const { return !starts.wake.empty() || !starts.spawn.empty() || starts.armCheck; }

  void run(Starts &starts) {
    starts.wake.each([](Thread *t) { t->cv.notify_one(); });
    starts.spawn.each([this, &starts](Thread *t) {
      try {
        std::thread([this, t] {
          nameThread("hcssim-pool");
          loop(t);
        }).detach();
      } catch (...) {
        // No thread: give the job back; a running thread (or the next check) takes it.
        std::lock_guard<std::mutex> lock(m);
        if (t->kind == Kind::Apply) {
          --applying;
          tasks.push_front(std::move(t->job));
        } else {
          --calling;
          deliveries.push_front(std::move(t->job));
        }
        delete t;
        armCheckLocked(starts);  // the check tries again
      }
    });
    if (starts.armCheck) armPoolCheck();
  }

  void loop(Thread *self) {
    std::unique_lock<std::mutex> lock(m);
    while (true) {
      while (!self->job) self->cv.wait(lock);
      OpPtr op = std::move(self->job);
      Kind kind = self->kind;
      lock.unlock();
      bool deliver = kind == Kind::Apply ? applyOp(op) : (deliverOp(std::move(op)), false);
      if (!deliver) op = nullptr;  // freed here (often the last reference: the client closed it), not under the lock
      Starts starts;
      lock.lock();
      if (kind == Kind::Apply) {
        --applying;
        if (deliver) {
          if (calling < size && deliveries.empty()) {
            ++calling;  // this thread calls back itself
            self->kind = Kind::Deliver;
            self->job = std::move(op);
          } else {
            deliveries.push_back(std::move(op));
          }
        }
      } else {
        --calling;
      }
      if (!self->job && !nextLocked(self)) idle.push_back(self);
      balanceLocked(starts, false);
      if (pending(starts)) {
        lock.unlock();
        run(starts);
        lock.lock();
      }
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

// Operations made ready under the scheduler lock, handed to the pool once it is released (and the
// timer thread woken then, if it must look at an earlier deadline). Declared before the lock guard
// in a scope, so that its destructor runs after the unlock.
class Ready {
 public:
  Ready() = default;
  Ready(const Ready &) = delete;
  Ready &operator=(const Ready &) = delete;
  ~Ready();
  void add(const OpPtr &op) {
    if (!first_) first_ = op;
    else more_.push_back(op);
  }
  void wakeTimer() { wakeTimer_ = true; }

 private:
  OpPtr first_;               // usually the only one: no vector allocated
  std::vector<OpPtr> more_;
  bool wakeTimer_ = false;
};

Ready::~Ready() {
  if (first_) pool().submit(first_, more_);
  if (wakeTimer_) sched().timerCv.notify_one();
}

void dispatchLocked(const OpPtr &op, Ready &ready) {
  if (op->phase == Operation::Phase::Hung || op->phase == Operation::Phase::Fifo) sched().pending.erase(op);
  op->phase = Operation::Phase::Dispatched;
  ready.add(op);
}

void releaseSlotLocked(const OpPtr &op, Ready &ready, Clock::time_point at);
bool pushTimerLocked(Clock::time_point due, const OpPtr &op);

void timerLoop() {
  Scheduler &s = sched();
  std::unique_lock<std::mutex> lock(s.m);
  while (true) {
    if (s.timers.empty()) {
      s.timerCv.wait(lock);
      continue;
    }
    auto now = Clock::now();
    Clock::time_point earliest = s.timers.top().due;
    if (now < earliest) {
      s.timerCv.wait_until(lock, earliest);
      continue;
    }
    // Every expired timer at once, handed to the pool in one go after the unlock.
    bool check = false;
    {
      Ready ready;
      while (!s.timers.empty() && s.timers.top().due <= now) {
        TimerEntry e = s.timers.top();
        s.timers.pop();
        if (!e.op) {
          check = true;
          continue;
        }
        if (e.op->phase != Operation::Phase::Timer) continue;
        dispatchLocked(e.op, ready);
        // The simulated work took the latency: the slot is free from the deadline on, however late
        // this thread or a worker gets to run on a busy host (the operation itself completes once
        // a worker has applied it). A waiting operation admitted now may already be due: taken in
        // this same pass.
        releaseSlotLocked(e.op, ready, e.due);
      }
      lock.unlock();
    }  // ready hands the operations to the pool here, unlocked
    if (check) pool().check();
    lock.lock();
  }
}

// Adds a deadline (op null: the pool's starvation check); returns true if the timer thread must be
// woken (after the unlock) because the deadline is the earliest — with one latency for every call,
// never while others are pending.
bool pushTimerLocked(Clock::time_point due, const OpPtr &op) {
  Scheduler &s = sched();
  bool earliest = s.timers.empty() || due < s.timers.top().due;
  s.timers.push(TimerEntry{due, ++s.seq, op});
  if (!s.timerThread) {
    s.timerThread = true;
    std::thread([] {
      nameThread("hcssim-timer");
      timerLoop();
    }).detach();
    return false;
  }
  return earliest;
}

void armPoolCheck() {
  Scheduler &s = sched();
  bool wake;
  {
    std::lock_guard<std::mutex> lock(s.m);
    wake = pushTimerLocked(Clock::now() + kStarvationCheck, nullptr);
  }
  if (wake) s.timerCv.notify_one();
}

// Takes a slot for `op` from `start` on (now, or the moment a slot became free if that is later
// than when the op began waiting): its simulated work lasts the latency from then.
void beginExecutionLocked(const OpPtr &op, Ready &ready, Clock::time_point start) {
  Scheduler &s = sched();
  ++s.executing;
  if (s.executing > s.maxExecuting) s.maxExecuting = s.executing;
  op->holdsSlot = true;
  if (op->latencyMs <= 0) {
    dispatchLocked(op, ready);
    return;
  }
  op->phase = Operation::Phase::Timer;
  auto due = start + std::chrono::microseconds(static_cast<int64_t>(op->latencyMs * 1000.0));
  if (pushTimerLocked(due, op)) ready.wakeTimer();
}

// A slot became free at `freedAt`: the waiting operations it admits start their work then, or when
// they began waiting if that is later.
void admitWaitingLocked(Ready &ready, Clock::time_point freedAt) {
  Scheduler &s = sched();
  while ((s.limit == 0 || s.executing < s.limit) && !s.fifo.empty()) {
    OpPtr op = s.fifo.front();
    s.fifo.pop_front();
    if (op->phase == Operation::Phase::Fifo) beginExecutionLocked(op, ready, std::max(freedAt, op->waitingSince));
  }
}

// Starts `op` now if the concurrency limit allows, else queues it (FIFO).
void admitLocked(const OpPtr &op, Ready &ready) {
  Scheduler &s = sched();
  if (s.limit == 0 || s.executing < s.limit) {
    // The start time matters only for a deadline (no clock read for a call without latency).
    beginExecutionLocked(op, ready, op->latencyMs > 0 ? Clock::now() : Clock::time_point());
  } else {
    op->phase = Operation::Phase::Fifo;
    op->waitingSince = Clock::now();
    s.pending.insert(op);
    s.fifo.push_back(op);
  }
}

// The slot of `op` is free from `at` on (its simulated work is over, or it was never applied).
void releaseSlotLocked(const OpPtr &op, Ready &ready, Clock::time_point at) {
  if (!op->holdsSlot) return;
  op->holdsSlot = false;
  --sched().executing;
  admitWaitingLocked(ready, at);
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
  // The time matters only to the operations the slot admits (no clock read when none waits).
  releaseSlotLocked(op, ready, s.fifo.empty() ? Clock::time_point() : Clock::now());
}

std::string defaultMessage(HRESULT hr) {
  switch (hr) {
    case E_ABORT_HR: return "The operation was canceled.";
    case HCS_E_TERMINATED: return "The operation was terminated (simulator reset).";
    case HCS_E_FAIL: return "Unspecified error (injected fault).";
    default: return "The operation failed.";
  }
}

// Completes the operation: trace line, result, slot released, waiters woken. Returns true if its
// callback is to be invoked (deliverOp), which happens after, on this or another pool thread.
bool complete(const OpPtr &op, OpOutcome out) {
  if (op->traceWanted) {
    if (traceEnabled()) traceCall(op->fn, op->traceId.get(), op->traceDoc ? op->traceDoc->traced() : nullptr, out.hr);
    else countCall(op->fn);
  }
  // Memory: what the calling thread allocated for the call (the operation, its work closure, the
  // document and its text) stays with the operation and is freed with it, normally by the client's
  // HcsCloseOperation on that same thread; what this thread allocated (the parsed document) is
  // freed here. glibc serves a thread fastest from what that thread freed, so allocating on one
  // thread and freeing on another sends every allocation down malloc's slow path.
  if (op->traceDoc) op->traceDoc->dropParsed();
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
  std::lock_guard<std::mutex> lock(op->m);
  op->st = Operation::St::Done;
  op->hr = out.hr;
  op->doc = std::move(doc);
  op->hasDoc = hasDoc;
  op->cv.notify_all();
  return !op->closed && op->callback;
}

void deliverOp(OpPtr op) {
  HCS_OPERATION_COMPLETION cb = nullptr;
  const void *ctx = nullptr;
  {
    // Read now: an operation closed since it completed is not called back.
    std::lock_guard<std::mutex> lock(op->m);
    if (!op->closed) {
      cb = op->callback;
      ctx = op->context;
    }
  }
  HCS_OPERATION handle = reinterpret_cast<HCS_OPERATION>(op->handle);
  op = nullptr;
  // No simulator lock is held here: the callback may call back into the library, and may block.
  if (cb) cb(handle, const_cast<void *>(ctx));
}

bool applyOp(const OpPtr &op) {
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
      out = op->work(op->fault);
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
  return complete(op, std::move(out));
}

}  // namespace

void nameThread(const char *name) {
#if defined(__linux__)
  pthread_setname_np(pthread_self(), name);
#else
  (void)name;
#endif
}

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
    op->fn = spec.fn;
    op->work = std::move(spec.work);
    op->fault = std::move(spec.fault);
    op->onNotApplied = std::move(spec.onNotApplied);
    op->latencyMs = spec.latencyMs;
    op->traceWanted = spec.traceWanted;
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
  admitWaitingLocked(ready, Clock::now());
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
