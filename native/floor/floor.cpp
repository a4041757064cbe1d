// libhcsfloor: the smallest possible asynchronous native call, for `npm run bench ffi`.
//
// It has the shape of an HCS operation and nothing else: create an operation with a completion
// callback, start it with a UTF-16 document, a worker thread completes it by calling the
// callback (a foreign thread, as HCS does), then read its result and close it. No parsing, no
// model, no scheduler. The benchmark drives it through koffi with the same callback mechanism as
// the HCS binding, interleaved with the simulator in one process, so the difference between the
// two is what the simulator and the library add to the bare cost of crossing threads.
//
// The worker pool has the same size as the simulator's (FloorInit), so that both have the same
// number of threads that can wait for the main thread at once.
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <thread>

#if defined(_WIN32)
#define FLOOR_API extern "C" __declspec(dllexport)
#else
#define FLOOR_API extern "C" __attribute__((visibility("default")))
#endif

typedef void (*FloorCompletion)(void *operation, uintptr_t context);

namespace {

struct Op {
  uintptr_t context;
  FloorCompletion callback;
};

struct Pool {
  std::mutex m;
  std::condition_variable cv;
  std::deque<Op *> queue;
  int threads = 0;

  void loop() {
    std::unique_lock<std::mutex> lock(m);
    for (;;) {
      cv.wait(lock, [this] { return !queue.empty(); });
      Op *op = queue.front();
      queue.pop_front();
      lock.unlock();
      op->callback(op, op->context);
      lock.lock();
    }
  }
};

Pool &pool() {
  static Pool *p = new Pool();  // never destroyed: detached threads use it until the process exits
  return *p;
}

}  // namespace

// Starts `threads` workers (once; later calls only add threads up to the new count).
FLOOR_API int32_t FloorInit(int32_t threads) {
  Pool &p = pool();
  std::lock_guard<std::mutex> lock(p.m);
  while (p.threads < threads) {
    std::thread([&p] { p.loop(); }).detach();
    ++p.threads;
  }
  return p.threads;
}

FLOOR_API void *FloorCreateOperation(uintptr_t context, FloorCompletion callback) {
  return new Op{context, callback};
}

// Starts the operation: a worker calls its callback. The document is not read (HCS would copy it).
FLOOR_API int32_t FloorStart(void *operation, const char16_t *document) {
  (void)document;
  Pool &p = pool();
  {
    std::lock_guard<std::mutex> lock(p.m);
    p.queue.push_back(static_cast<Op *>(operation));
  }
  p.cv.notify_one();
  return 0;
}

FLOOR_API int32_t FloorGetOperationResult(void *operation, void **result) {
  (void)operation;
  *result = nullptr;
  return 0;
}

FLOOR_API void FloorCloseOperation(void *operation) { delete static_cast<Op *>(operation); }
