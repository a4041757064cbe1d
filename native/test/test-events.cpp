// System events: HcsSetComputeSystemCallback, SystemExited on terminate / shutdown / the crash
// control and crash faults, on a simulator thread, none after close.
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"

using hcssim::Json;

namespace {

struct EventProbe {
  std::mutex m;
  std::condition_variable cv;
  std::vector<std::pair<uint32_t, std::string>> events;
  std::thread::id thread;
};

void HCS_CALL onEvent(HCS_EVENT *event, void *context) {
  auto *p = static_cast<EventProbe *>(context);
  std::lock_guard<std::mutex> lock(p->m);
  p->events.emplace_back(event->Type, event->EventData ? hcssim::utf16ToUtf8(event->EventData) : std::string());
  p->thread = std::this_thread::get_id();
  p->cv.notify_all();
}

bool waitEvents(EventProbe &p, size_t n) {
  std::unique_lock<std::mutex> lock(p.m);
  return p.cv.wait_for(lock, std::chrono::seconds(10), [&] { return p.events.size() >= n; });
}

Json exitDoc(EventProbe &p, size_t i) {
  std::lock_guard<std::mutex> lock(p.m);
  Json j;
  std::string e;
  CHECK(hcssim::parseJson(p.events[i].second, j, e));
  CHECK_EQ(p.events[i].first, static_cast<uint32_t>(HcsEventSystemExited));
  return j;
}

}  // namespace

TEST(events_terminate_and_close) {
  t::reset();
  HCS_SYSTEM a = t::createRunning("ev-a", t::lcowDoc());
  auto id = t::u16("ev-a");
  HCS_SYSTEM b = nullptr, closed = nullptr;
  CHECK_HR(HcsOpenComputeSystem(id.c_str(), HCS_GENERIC_ALL, &b), 0);
  CHECK_HR(HcsOpenComputeSystem(id.c_str(), HCS_GENERIC_ALL, &closed), 0);
  EventProbe pa, pb, pc;
  CHECK_HR(HcsSetComputeSystemCallback(a, 0, &pa, onEvent), 0);
  CHECK_HR(HcsSetComputeSystemCallback(a, 0, &pa, onEvent), HCS_E_OPERATION_SYSTEM_CALLBACK_ALREADY_SET);
  CHECK_HR(HcsSetComputeSystemCallback(b, 0, &pb, onEvent), 0);
  CHECK_HR(HcsSetComputeSystemCallback(closed, 0, &pc, onEvent), 0);
  HcsCloseComputeSystem(closed);
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsTerminateComputeSystem(a, op, nullptr); }).hr, 0);
  CHECK(waitEvents(pa, 1));
  CHECK(waitEvents(pb, 1));
  Json j = exitDoc(pa, 0);
  CHECK_EQ(j.get("ExitType")->asString(), std::string("ForcedExit"));
  CHECK_EQ(j.get("Status")->asInt(), 0);
  CHECK_EQ(j.get("Attribution")->items()[0].get("SystemExit")->get("Detail")->asString(), std::string("Terminate"));
  CHECK(pa.thread != std::this_thread::get_id());
  CHECK_EQ(pc.events.size(), static_cast<size_t>(0));
  HcsCloseComputeSystem(a);
  HcsCloseComputeSystem(b);
}

TEST(events_crash_control_and_fault) {
  t::reset();
  HCS_SYSTEM s = t::createRunning("ev-crash", t::lcowDoc());
  EventProbe p;
  CHECK_HR(HcsSetComputeSystemCallback(s, 0, &p, onEvent), 0);
  t::configure(R"({"crash":{"systemId":"ev-crash","attribution":"TripleFault"}})");
  CHECK(waitEvents(p, 1));
  Json j = exitDoc(p, 0);
  CHECK_EQ(j.get("ExitType")->asString(), std::string("UnexpectedExit"));
  CHECK_EQ(j.get("Status")->asInt(), static_cast<int64_t>(static_cast<HRESULT>(0x80370106)));
  CHECK(j.get("Attribution")->items()[0].get("TripleFault") != nullptr);
  // The VM is stopped: a modify now fails; terminating it again raises nothing.
  CHECK_HR(t::modify(s, R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"x","Path":"/x","Port":564}})").hr, HCS_E_INVALID_STATE);
  CHECK_HR(t::run([&](HCS_OPERATION op) { return HcsTerminateComputeSystem(s, op, nullptr); }).hr, HCS_E_SYSTEM_ALREADY_STOPPED);
  HcsCloseComputeSystem(s);
  // A crash fault: the Nth matching call crashes its VM as it arrives.
  HCS_SYSTEM f = t::createRunning("ev-fault", t::lcowDoc());
  EventProbe pf;
  CHECK_HR(HcsSetComputeSystemCallback(f, 0, &pf, onEvent), 0);
  t::configure(R"({"faults":[{"fn":"HcsModifyComputeSystem","nth":1,"crash":true}]})");
  CHECK_HR(t::modify(f, R"({"ResourcePath":"VirtualMachine/Devices/Plan9/Shares","RequestType":"Add","Settings":{"Name":"x","Path":"/x","Port":564}})").hr, HCS_E_INVALID_STATE);
  CHECK(waitEvents(pf, 1));
  CHECK_EQ(exitDoc(pf, 0).get("ExitType")->asString(), std::string("UnexpectedExit"));
  HcsCloseComputeSystem(f);
  t::reset();
}
