// Operations, the HCS-side scheduler (latency, concurrency limit, FIFO admission, hang/cancel) and
// the fixed worker pool that applies operations and invokes completion callbacks.
//
// Lock order: never hold any simulator mutex while invoking a completion callback. The scheduler
// mutex, an operation's mutex and the pool mutex are leaf locks (no callbacks, no model access).
#ifndef HCSSIM_SCHEDULER_H
#define HCSSIM_SCHEDULER_H

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "computecore.h"
#include "config.h"
#include "document.h"
#include "json.h"

namespace hcssim {

struct OpOutcome {
  HRESULT hr = 0;
  std::string doc;  // success result document (UTF-8 JSON), empty for none
  std::string message;  // failure message
};

// The work of an operation, run by a pool thread with the fault that fired for its call (hit false: none).
using OpWork = std::function<OpOutcome(const FaultHit &)>;

struct Operation {
  enum class St { NotStarted, Queued, Running, Done };
  enum class Phase { None, Hung, Fifo, Timer, Dispatched };

  uintptr_t handle = 0;
  // guarded by m
  std::mutex m;
  std::condition_variable cv;
  const void *context = nullptr;
  HCS_OPERATION_COMPLETION callback = nullptr;
  St st = St::NotStarted;
  bool cancelRequested = false;
  bool terminated = false;
  bool closed = false;
  HRESULT hr = 0;
  std::u16string doc;
  bool hasDoc = false;
  // set once before the op is started, then read only by the worker
  const char *fn = "";  // the function's name (a string literal)
  OpWork work;
  FaultHit fault;
  std::function<void()> onNotApplied;  // run by the worker when the op is cancelled / terminated
  bool traceWanted = false;
  // The traced id (null: none) and the traced document (null: none). Both are also what a `work`
  // may read through plain pointers: the id shares ownership of what it is in (the system record,
  // by shared_ptr's aliasing constructor), which a modify's work points to, and the document is
  // what it reads its parsed request from. They are released only with the operation, never before
  // the work has run.
  std::shared_ptr<const std::string> traceId;
  DocumentPtr traceDoc;
  double latencyMs = 0;
  // guarded by the scheduler mutex
  Phase phase = Phase::None;
  bool holdsSlot = false;
  std::chrono::steady_clock::time_point waitingSince;  // phase Fifo: since when
};

using OpPtr = std::shared_ptr<Operation>;

// Handle table.
HCS_OPERATION registerOperation(const void *context, HCS_OPERATION_COMPLETION callback);
OpPtr findOperation(HCS_OPERATION handle);
// Removes the handle; the callback is detached (never invoked afterwards).
bool closeOperation(HCS_OPERATION handle);

// What a call hands to the operation when it starts it.
struct StartSpec {
  const char *fn = "";  // a string literal
  OpWork work;
  FaultHit fault;  // passed to work
  std::function<void()> onNotApplied;
  bool hang = false;  // parked until cancelled / reset
  double latencyMs = 0;
  bool traceWanted = false;
  // Kept with the operation (Operation::traceId, traceDoc): a work may hold plain pointers into them.
  std::shared_ptr<const std::string> traceId;  // null: none; an id in a record: owning the record
  DocumentPtr traceDoc;  // null: none
};
bool operationStarted(const OpPtr &op);
// Starts an operation (NotStarted -> Queued); returns HCS_E_OPERATION_ALREADY_STARTED if it was
// used before (nothing of the spec is applied then).
HRESULT startOperation(const OpPtr &op, StartSpec spec);
HRESULT cancelOperation(const OpPtr &op);
// Completes every queued (not yet applied) operation with HCS_E_TERMINATED.
void terminateQueuedOperations();
// Lets every operation parked by a hang fault run now (control "releaseHangs").
void releaseHungOperations();
void setConcurrencyLimit(int limit);

struct SchedulerStats {
  int executing;
  int maxExecuting;
  int waiting;
  int hung;
  int open;  // operation handles created and not closed
};
SchedulerStats schedulerStats();
void resetSchedulerStats();
// The size of the worker pool (default 4; env HCSSIM_WORKER_THREADS).
int workerThreadCount();

// Names the calling thread (top -H, perf, /proc/<pid>/task/*/comm; at most 15 characters): the
// simulator's threads are hcssim-pool, hcssim-timer, hcssim-event and hcssim-guest, not the name
// of whichever thread started them.
void nameThread(const char *name);

// Builds the failure result document.
std::string errorDocument(HRESULT hr, const std::string &message, const std::string &fn);

}  // namespace hcssim

#endif
