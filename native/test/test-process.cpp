// Whole-process behaviour: exit with operations in flight, and persistence across a killed process.
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "harness.h"

extern char **environ;

using hcssim::Json;

namespace t {

int spawnSelf(const std::vector<std::string> &args, const std::vector<std::string> &env) {
  char exe[4096];
  ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return -1;
  exe[n] = 0;
  std::vector<std::string> argvS = {exe};
  argvS.insert(argvS.end(), args.begin(), args.end());
  std::vector<char *> argv;
  for (auto &a : argvS) argv.push_back(&a[0]);
  argv.push_back(nullptr);
  std::vector<std::string> envS;
  for (char **e = environ; *e; ++e)
    if (std::strncmp(*e, "HCSSIM_", 7) != 0) envS.push_back(*e);
  envS.insert(envS.end(), env.begin(), env.end());
  std::vector<char *> envp;
  for (auto &e : envS) envp.push_back(&e[0]);
  envp.push_back(nullptr);
  pid_t pid;
  if (posix_spawn(&pid, exe, nullptr, nullptr, argv.data(), envp.data()) != 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
  }
  return status;
}

static void HCS_CALL slowCallback(HCS_OPERATION op, void *) {
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  HcsCloseOperation(op);
}

int runChild(const char *name, int argc, char **argv) {
  (void)argc;
  if (std::strcmp(name, "exit-in-flight") == 0) {
    // operations pending with latency, one hung, one callback running: then exit(0)
    configure(R"({"latencyMs":30,"faults":[{"fn":"HcsEnumerateComputeSystems","nth":3,"hang":true}]})");
    for (int i = 0; i < 6; ++i) HcsEnumerateComputeSystems(nullptr, HcsCreateOperation(nullptr, slowCallback));
    HCS_OPERATION op = HcsCreateOperation(nullptr, nullptr);
    HcsEnumerateComputeSystems(nullptr, op);
    HcsWaitForOperationResult(op, HCS_INFINITE, nullptr);  // callbacks of the first wave are running now
    std::exit(0);
  }
  if (std::strcmp(name, "persist-writer") == 0) {
    // HCSSIM_STATE_FILE is set by the parent: create, start, attach, mount, grant, then SIGKILL
    HCS_SYSTEM s = createRunning("killed-vm", lcowDoc());
    Result r = modify(s, std::string(R"({"ResourcePath":"VirtualMachine/Devices/Scsi/)") + kCtrl0 +
                             R"(/Attachments/1","RequestType":"Add","Settings":{"Type":"VirtualDisk","Path":"C:\\\u00e9\ud83d\ude00.vhdx"},"GuestRequest":{"RequestType":"Add","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/gcs/c/k","Lun":1}}})");
    if (r.hr != 0) return 3;
    if (HcsGrantVmAccess(u"killed-vm", u"C:\\g") != 0) return 4;
    ::kill(::getpid(), SIGKILL);
    return 5;
  }
  if (std::strcmp(name, "persist-reader") == 0) {
    HCS_SYSTEM s = nullptr;
    if (HcsOpenComputeSystem(u"killed-vm", HCS_GENERIC_ALL, &s) != 0) return 10;
    Json st = simState(s);
    const Json *att = st.get("Devices")->get("Scsi")->get(kCtrl0)->get("Attachments")->get("1");
    if (!att || hcssim::utf8ToUtf16(att->get("Path")->asString()) != u"C:\\\u00e9\U0001F600.vhdx") return 11;
    if (st.get("Guest")->get("MappedVirtualDisks")->items().size() != 1) return 12;
    if (st.get("VmAccess")->items().size() != 1) return 13;
    if (st.get("HotAdded")->asInt() != 2) return 14;
    Result p = run([&](HCS_OPERATION op) { return HcsGetComputeSystemProperties(s, op, nullptr); });
    if (p.json().get("State")->asString() != "Running") return 15;
    // keeps working after the reload
    Result r = modify(s, R"({"GuestRequest":{"RequestType":"Remove","ResourceType":"MappedVirtualDisk","Settings":{"MountPath":"/run/gcs/c/k"}}})");
    if (r.hr != 0) return 16;
    return failures == 0 ? 0 : 17;
  }
  std::fprintf(stderr, "unknown child %s\n", name);
  (void)argv;
  return 2;
}

}  // namespace t

TEST(process_exit_with_operations_in_flight) {
  for (int i = 0; i < 3; ++i) {
    int status = t::spawnSelf({"--child", "exit-in-flight"}, {});
    CHECK(WIFEXITED(status));
    CHECK_EQ(WEXITSTATUS(status), 0);
  }
}

TEST(persistence_across_killed_process) {
  std::string file = "/tmp/hcssim-test-" + std::to_string(::getpid()) + "-killed.json";
  std::remove(file.c_str());
  int w = t::spawnSelf({"--child", "persist-writer"}, {"HCSSIM_STATE_FILE=" + file});
  CHECK(WIFSIGNALED(w) && WTERMSIG(w) == SIGKILL);
  int r = t::spawnSelf({"--child", "persist-reader"}, {"HCSSIM_STATE_FILE=" + file});
  CHECK(WIFEXITED(r));
  if (WIFEXITED(r) && WEXITSTATUS(r) != 0) t::report(__FILE__, __LINE__, "reader exit code " + std::to_string(WEXITSTATUS(r)));
  std::remove(file.c_str());
}
