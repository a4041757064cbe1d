// A C++ client of libhcssim.so shaped like the TypeScript binding, for counting the simulator's
// own work per operation without Node's noise: serial HcsModifyComputeSystem Add/Remove at zero
// latency; the completion callback (on a pool thread) hands the operation to the main thread and
// blocks until the main thread took it (as koffi does), then the main thread reads the result
// (HcsGetOperationResult, LocalFree) and closes the operation.
//
//   g++ -O2 -std=c++17 -pthread -I native/include native/bench/serial-client.cpp -o /tmp/serial-client -ldl
//   /tmp/serial-client build/native/libhcssim.so 20000        # calling thread CPU per operation
//   # instructions per operation by thread (pool threads: the files that name Pool::loop), from the
//   # difference of two run lengths (startup and warm-up cancel out):
//   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/cg.2000 /tmp/serial-client build/native/libhcssim.so 2000
//   valgrind --tool=callgrind --separate-threads=yes --callgrind-out-file=/tmp/cg.6000 /tmp/serial-client build/native/libhcssim.so 6000
//   grep -H ^summary: /tmp/cg.*-*
//
// Not built by scripts/build-native.mjs and not shipped.
#include <dlfcn.h>
#include <pthread.h>

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <string>

#include "computecore.h"

namespace {

// The callback's hand-over to the main thread (koffi's, in the binding).
std::mutex m;
std::condition_variable posted, taken;
HCS_OPERATION done = nullptr;
unsigned long postedCount = 0, takenCount = 0;

void completion(HCS_OPERATION op, void *) {
  std::unique_lock<std::mutex> lock(m);
  done = op;
  unsigned long me = ++postedCount;
  posted.notify_one();
  taken.wait(lock, [me] { return takenCount >= me; });
}

std::u16string wide(const std::string &s) { return std::u16string(s.begin(), s.end()); }

template <typename F>
F sym(void *lib, const char *name) {
  void *f = dlsym(lib, name);
  if (!f) {
    std::fprintf(stderr, "no %s\n", name);
    std::exit(1);
  }
  return reinterpret_cast<F>(f);
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: serial-client <libhcssim.so> [operations]\n");
    return 2;
  }
  int n = argc > 2 ? std::atoi(argv[2]) : 10000;
  void *lib = dlopen(argv[1], RTLD_NOW);
  if (!lib) {
    std::fprintf(stderr, "%s\n", dlerror());
    return 1;
  }
  auto createOp = sym<decltype(&HcsCreateOperation)>(lib, "HcsCreateOperation");
  auto closeOp = sym<decltype(&HcsCloseOperation)>(lib, "HcsCloseOperation");
  auto getResult = sym<decltype(&HcsGetOperationResult)>(lib, "HcsGetOperationResult");
  auto waitResult = sym<decltype(&HcsWaitForOperationResult)>(lib, "HcsWaitForOperationResult");
  auto createSystem = sym<decltype(&HcsCreateComputeSystem)>(lib, "HcsCreateComputeSystem");
  auto startSystem = sym<decltype(&HcsStartComputeSystem)>(lib, "HcsStartComputeSystem");
  auto modify = sym<decltype(&HcsModifyComputeSystem)>(lib, "HcsModifyComputeSystem");
  auto localFree = sym<decltype(&LocalFree)>(lib, "LocalFree");
  auto configure = sym<HRESULT (*)(PCWSTR)>(lib, "HcsSimConfigure");

  configure(wide("{\"latencyMs\":0,\"jitterMs\":0,\"concurrency\":0}").c_str());
  const std::string g = "df6d0690-79e5-55b6-a5ec-c1e2f77f580a";
  std::u16string config = wide("{\"SchemaVersion\":{\"Major\":2,\"Minor\":1},\"VirtualMachine\":{\"Chipset\":{\"Uefi\":{}},"
                               "\"Devices\":{\"Scsi\":{\"" + g + "\":{\"Attachments\":{}}},\"Plan9\":{}}}}");
  std::u16string add = wide("{\"ResourcePath\":\"VirtualMachine/Devices/Scsi/" + g + "/Attachments/1\",\"RequestType\":\"Add\","
                            "\"Settings\":{\"Type\":\"VirtualDisk\",\"Path\":\"C:\\\\bench\\\\layers\\\\0-1\\\\layer.vhdx\"}}");
  std::u16string remove = wide("{\"ResourcePath\":\"VirtualMachine/Devices/Scsi/" + g + "/Attachments/1\",\"RequestType\":\"Remove\"}");

  HCS_SYSTEM system = nullptr;
  PWSTR doc = nullptr;
  HCS_OPERATION op = createOp(nullptr, nullptr);
  createSystem(wide("serial-client").c_str(), config.c_str(), op, nullptr, &system);
  HRESULT hr = waitResult(op, HCS_INFINITE, &doc);
  closeOp(op);
  if (hr < 0) return std::fprintf(stderr, "create: 0x%08x\n", static_cast<unsigned>(hr)), 1;
  op = createOp(nullptr, nullptr);
  startSystem(system, op, nullptr);
  hr = waitResult(op, HCS_INFINITE, &doc);
  closeOp(op);
  if (hr < 0) return std::fprintf(stderr, "start: 0x%08x\n", static_cast<unsigned>(hr)), 1;

  auto roundTrip = [&](const std::u16string &request) {
    HCS_OPERATION o = createOp(reinterpret_cast<void *>(1), completion);
    HRESULT r = modify(system, o, request.c_str(), nullptr);
    if (r < 0) std::fprintf(stderr, "modify: 0x%08x\n", static_cast<unsigned>(r)), std::exit(1);
    std::unique_lock<std::mutex> lock(m);
    posted.wait(lock, [] { return done != nullptr; });
    HCS_OPERATION d = done;
    done = nullptr;
    takenCount = postedCount;
    taken.notify_all();
    lock.unlock();
    PWSTR result = nullptr;
    r = getResult(d, &result);
    if (result) localFree(result);
    if (r < 0) std::fprintf(stderr, "result: 0x%08x\n", static_cast<unsigned>(r)), std::exit(1);
    closeOp(d);
  };
  for (int i = 0; i < 200; ++i) {
    roundTrip(add);
    roundTrip(remove);
  }
  timespec t0, t1;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t0);
  for (int i = 0; i < n / 2; ++i) {
    roundTrip(add);
    roundTrip(remove);
  }
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t1);
  std::printf("calling thread CPU per operation: %.2f us\n",
              ((t1.tv_sec - t0.tv_sec) * 1e9 + (t1.tv_nsec - t0.tv_nsec)) / 1e3 / n);
  return 0;
}
