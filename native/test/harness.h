// A tiny assert-based test harness for the simulator's C++ tests (no framework).
#ifndef HCSSIM_TEST_HARNESS_H
#define HCSSIM_TEST_HARNESS_H

#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "computecore.h"
#include "json.h"

namespace t {

struct Case {
  const char *name;
  void (*fn)();
};
std::vector<Case> &registry();
struct Register {
  Register(const char *name, void (*fn)()) { registry().push_back({name, fn}); }
};
extern int failures;
void report(const char *file, int line, const std::string &what);

// ---- helpers over the C API
std::u16string u16(const std::string &utf8);
struct Result {
  HRESULT hr;
  std::string doc;  // UTF-8, empty if none
  hcssim::Json json() const;
};
// Runs an operation-driven call with a fresh operation and waits for it.
Result run(const std::function<HRESULT(HCS_OPERATION)> &call);
void configure(const std::string &json);
void reset();  // {"reset": true, latency 0, concurrency 0, no faults, no trace, no state file}
HCS_SYSTEM createSystem(const std::string &id, const std::string &doc, HRESULT expect = 0);
HCS_SYSTEM createRunning(const std::string &id, const std::string &doc);
Result modify(HCS_SYSTEM sys, const std::string &doc);
hcssim::Json simState(HCS_SYSTEM sys);
// LCOW create document (1 SCSI controller, VPMem 4 x 1 GiB, Plan9) and WCOW create document (1 SCSI
// controller with scratch at 0, VSMB), both with VirtualMachine.GuestConnection (HCS owns the guest
// connection and forwards GuestRequest); the *BridgeDoc forms have none (the guest dials the GCS bridge).
std::string lcowDoc();
std::string wcowDoc();
std::string lcowBridgeDoc();
std::string wcowBridgeDoc();
// Inserts "GuestConnection": gc into the VirtualMachine object of a create document.
std::string withGuestConnection(std::string doc, const std::string &gc);
extern const char *const kCtrl0;
std::string hex(HRESULT hr);
// Child-process entry points (test-process.cpp): `<test binary> --child <name> args...`.
int runChild(const char *name, int argc, char **argv);
// Runs this test binary as a child with extra environment entries; returns the wait status.
int spawnSelf(const std::vector<std::string> &args, const std::vector<std::string> &env);

}  // namespace t

#define TEST(name)                                   \
  static void name();                                \
  static t::Register reg_##name(#name, &name);       \
  static void name()

#define CHECK(cond)                                              \
  do {                                                           \
    if (!(cond)) t::report(__FILE__, __LINE__, "CHECK(" #cond ")"); \
  } while (0)

#define CHECK_HR(actual, expected)                                                                       \
  do {                                                                                                   \
    HRESULT a_ = (actual), e_ = (expected);                                                              \
    if (a_ != e_) t::report(__FILE__, __LINE__, std::string(#actual " = ") + t::hex(a_) + ", expected " + t::hex(e_)); \
  } while (0)

#define CHECK_EQ(actual, expected)                                                      \
  do {                                                                                  \
    auto a_ = (actual);                                                                 \
    auto e_ = (expected);                                                               \
    if (!(a_ == e_)) t::report(__FILE__, __LINE__, std::string("CHECK_EQ(" #actual ", " #expected ")")); \
  } while (0)

#endif
