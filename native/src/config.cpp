#include "config.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <vector>

#include "core.h"
#include "events.h"
#include "gcs-protocol.h"
#include "gcs.h"
#include "persist.h"
#include "scheduler.h"

namespace hcssim {

namespace {

const char *const kFunctions[] = {
    "HcsCreateComputeSystem", "HcsOpenComputeSystem",        "HcsCloseComputeSystem",     "HcsStartComputeSystem",
    "HcsShutDownComputeSystem", "HcsTerminateComputeSystem", "HcsGetComputeSystemProperties",
    "HcsModifyComputeSystem",  "HcsSetComputeSystemCallback", "HcsEnumerateComputeSystems", "HcsGrantVmAccess",
    "HcsRevokeVmAccess",       "NameToGuid",
    // host layer API and bind filter (layers.cpp)
    "ActivateLayer", "PrepareLayer", "GetLayerMountPath", "UnprepareLayer", "DeactivateLayer", "BfSetupFilter", "BfRemoveMapping"};

struct Latency {
  double ms = 0;
  double jitterMs = 0;
};

struct Fault {
  std::string fn;            // never empty after parsing
  int64_t nth = 0;           // 0 = every matching call
  std::string resourcePath;  // glob; empty = any
  bool hasResourcePath = false;
  HRESULT hr = HCS_E_FAIL;
  std::string message;
  bool guestOnly = false;
  bool hang = false;
  bool crash = false;
  std::string attribution;
  bool hasHr = false;
  std::string resourceType;  // glob on a bridge ModifySettings' Request.ResourceType
  bool hasResourceType = false;
  double delayMs = 0;
  bool drop = false;
  bool unknownId = false;
  bool oversized = false;
  bool badJson = false;
  int64_t count = 0;
};

struct Settings {
  std::mutex m;
  Latency base;
  std::map<std::string, Latency, std::less<>> perFn;  // less<>: looked up by const char *
  std::vector<Fault> faults;
  std::mt19937_64 rng{0x5eed};
  // Set under m whenever the above change, read without it: a call that has no fault to count and
  // no latency to pick (the common case) takes no lock.
  std::atomic<bool> noFaults{true};
  std::atomic<bool> noLatency{true};
  void refreshLocked() {
    noFaults = faults.empty();
    noLatency = base.ms == 0 && base.jitterMs == 0 && perFn.empty();
  }
};

Settings &settings() {
  static Settings *s = new Settings();
  return *s;
}

bool globMatch(const char *pat, const char *str) {
  const char *star = nullptr;
  const char *resume = nullptr;
  while (*str) {
    if (*pat == '*') {
      star = pat++;
      resume = str;
    } else if (*pat == *str) {
      ++pat;
      ++str;
    } else if (star) {
      pat = star + 1;
      str = ++resume;
    } else {
      return false;
    }
  }
  while (*pat == '*') ++pat;
  return *pat == 0;
}

struct ConfigError {
  HRESULT hr;
  std::string message;
};

[[noreturn]] void bad(const std::string &msg) { throw ConfigError{HCS_E_INVALID_JSON, msg}; }
[[noreturn]] void badValue(const std::string &msg) { throw ConfigError{HCS_E_INVALIDARG, msg}; }

double nonNegative(const Json &v, const std::string &what) {
  if (!v.isNumber()) bad(what + ": expected a number");
  if (v.asNumber() < 0) badValue(what + ": must be >= 0");
  return v.asNumber();
}

Latency parseLatency(const Json &v, const std::string &what) {
  if (!v.isObject()) bad(what + ": expected an object {\"ms\", \"jitterMs\"}");
  Latency l;
  for (const auto &m : v.members()) {
    if (m.first == "ms") l.ms = nonNegative(m.second, what + ".ms");
    else if (m.first == "jitterMs") l.jitterMs = nonNegative(m.second, what + ".jitterMs");
    else bad(what + ": unknown key \"" + m.first + "\"");
  }
  return l;
}

Fault parseFault(const Json &v, const std::string &what) {
  if (!v.isObject()) bad(what + ": expected an object");
  Fault f;
  for (const auto &m : v.members()) {
    const std::string k = m.first;
    const Json &x = m.second;
    if (k == "fn") {
      if (!x.isString()) bad(what + ".fn: expected a string");
      if (!isKnownFunction(x.asString())) badValue(what + ".fn: unknown function \"" + x.asString() + "\"");
      f.fn = x.asString();
    } else if (k == "nth") {
      if (!x.isNumber()) bad(what + ".nth: expected a number");
      if (!x.isInteger(1, 9007199254740991.0)) badValue(what + ".nth: expected an integer >= 1");
      f.nth = x.asInt();
    } else if (k == "resourcePath") {
      if (!x.isString()) bad(what + ".resourcePath: expected a string");
      f.resourcePath = x.asString();
      f.hasResourcePath = true;
    } else if (k == "hr") {
      if (!x.isNumber()) bad(what + ".hr: expected a number");
      if (!x.isInteger(-2147483648.0, 4294967295.0)) badValue(what + ".hr: expected an int32 or uint32 HRESULT");
      f.hr = static_cast<HRESULT>(static_cast<uint32_t>(static_cast<int64_t>(x.asNumber()) & 0xFFFFFFFF));
      f.hasHr = true;
    } else if (k == "message") {
      if (!x.isString()) bad(what + ".message: expected a string");
      f.message = x.asString();
    } else if (k == "guestOnly") {
      if (!x.isBool()) bad(what + ".guestOnly: expected a boolean");
      f.guestOnly = x.asBool();
    } else if (k == "hang") {
      if (!x.isBool()) bad(what + ".hang: expected a boolean");
      f.hang = x.asBool();
    } else if (k == "crash") {
      if (!x.isBool()) bad(what + ".crash: expected a boolean");
      f.crash = x.asBool();
    } else if (k == "resourceType") {
      if (!x.isString()) bad(what + ".resourceType: expected a string");
      f.resourceType = x.asString();
      f.hasResourceType = true;
    } else if (k == "delayMs") {
      f.delayMs = nonNegative(x, what + ".delayMs");
    } else if (k == "drop" || k == "unknownId" || k == "oversized" || k == "badJson") {
      if (!x.isBool()) bad(what + "." + k + ": expected a boolean");
      (k == "drop" ? f.drop : k == "unknownId" ? f.unknownId : k == "oversized" ? f.oversized : f.badJson) = x.asBool();
    } else if (k == "attribution") {
      if (!x.isString()) bad(what + ".attribution: expected a string");
      if (!isKnownCrashAttribution(x.asString())) badValue(what + ".attribution: unknown attribution \"" + x.asString() + "\"");
      f.attribution = x.asString();
    } else {
      bad(what + ": unknown key \"" + k + "\"");
    }
  }
  if (f.fn.empty()) f.fn = "HcsModifyComputeSystem";
  if ((f.hasResourcePath || f.guestOnly) && f.fn != "HcsModifyComputeSystem")
    badValue(what + ": resourcePath and guestOnly apply only to HcsModifyComputeSystem");
  bool bridge = isBridgeFunction(f.fn);
  if ((f.delayMs > 0 || f.drop || f.unknownId || f.oversized || f.badJson) && !bridge)
    badValue(what + ": delayMs, drop, unknownId, oversized and badJson apply only to bridge:<MessageType> faults");
  if (f.hasResourceType && f.fn != "bridge:ModifySettings")
    badValue(what + ": resourceType applies only to bridge:ModifySettings");
  if (f.drop + f.unknownId + f.oversized + f.badJson + f.crash + f.hang > 1)
    badValue(what + ": drop, unknownId, oversized, badJson, crash and hang exclude each other");
  if (f.message.empty()) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "injected fault 0x%08X in %s", static_cast<unsigned>(f.hr), f.fn.c_str());
    f.message = buf;
  }
  return f;
}

struct ParsedConfig {
  bool reset = false;
  bool clearFaults = false;
  bool hasFaults = false;
  std::vector<Fault> faults;
  bool hasLatencyMs = false, hasJitterMs = false;
  double latencyMs = 0, jitterMs = 0;
  bool hasLatency = false;
  std::map<std::string, Latency, std::less<>> perFn;  // less<>: looked up by const char *
  bool hasConcurrency = false;
  int concurrency = 0;
  bool hasTrace = false;
  std::string trace;
  bool hasStateFile = false;
  std::string stateFile;
  bool hasSeed = false;
  uint64_t seed = 0;
  bool hasCrash = false;
  std::string crashId;
  std::string crashAttribution;
  bool hasCancel = false;
  bool cancel = false;
  bool hasRemoveNotAttached = false;
  HRESULT removeNotAttached = HCS_E_NOT_FOUND;
  bool releaseHangs = false;
  bool hasGuestDial = false;
  bool guestDial = true;
  bool hasHvsockDir = false;
  std::string hvsockDir;
  bool hasGuestNotify = false;
  std::string notifyId;
  Json notifyBody;
  bool hasRefuseGuestRequests = false;
  bool refuseGuestRequests = false;
};

// "removeNotAttached": 0 = success, else the HRESULT to fail with.
std::atomic<HRESULT> gRemoveNotAttached{HCS_E_NOT_FOUND};
std::atomic<bool> gCancelHonoured{false};
// As real HCS: no guest connection, no GuestRequest (docs/hcs.md).
constexpr bool kRefuseGuestRequestsDefault = true;
std::atomic<bool> gRefuseGuestRequests{kRefuseGuestRequestsDefault};
std::atomic<int64_t> gInventoryQueries{0};
std::atomic<int64_t> gInventoryQueriesByTestHelpers{0};

ParsedConfig parseConfig(const Json &doc) {
  if (!doc.isObject()) bad("configuration: expected an object");
  ParsedConfig c;
  for (const auto &m : doc.members()) {
    const std::string &k = m.first;
    const Json &v = m.second;
    if (k == "latencyMs") {
      c.hasLatencyMs = true;
      c.latencyMs = nonNegative(v, k);
    } else if (k == "jitterMs") {
      c.hasJitterMs = true;
      c.jitterMs = nonNegative(v, k);
    } else if (k == "latency") {
      if (!v.isObject()) bad("latency: expected an object keyed by function name");
      c.hasLatency = true;
      for (const auto &e : v.members()) {
        if (!isKnownFunction(e.first)) badValue("latency: unknown function \"" + e.first + "\"");
        c.perFn[e.first] = parseLatency(e.second, "latency." + e.first);
      }
    } else if (k == "concurrency") {
      if (!v.isNumber()) bad("concurrency: expected a number");
      if (!v.isInteger(0, 1000000)) badValue("concurrency: expected an integer >= 0");
      c.hasConcurrency = true;
      c.concurrency = static_cast<int>(v.asInt());
    } else if (k == "trace") {
      if (!v.isString() && !v.isNull()) bad("trace: expected a file name or null");
      c.hasTrace = true;
      c.trace = v.isString() ? v.asString() : std::string();
    } else if (k == "faults") {
      if (!v.isArray()) bad("faults: expected an array");
      c.hasFaults = true;
      for (size_t i = 0; i < v.items().size(); ++i)
        c.faults.push_back(parseFault(v.items()[i], "faults[" + std::to_string(i) + "]"));
    } else if (k == "clearFaults") {
      if (!v.isBool()) bad("clearFaults: expected a boolean");
      c.clearFaults = v.asBool();
    } else if (k == "reset") {
      if (!v.isBool()) bad("reset: expected a boolean");
      c.reset = v.asBool();
    } else if (k == "stateFile") {
      if (!v.isString() && !v.isNull()) bad("stateFile: expected a file name or null");
      c.hasStateFile = true;
      c.stateFile = v.isString() ? v.asString() : std::string();
    } else if (k == "crash") {
      if (!v.isObject()) bad("crash: expected an object {\"systemId\", \"attribution\"}");
      c.hasCrash = true;
      for (const auto &e : v.members()) {
        if (e.first == "systemId" && e.second.isString()) c.crashId = e.second.asString();
        else if (e.first == "attribution" && e.second.isString()) c.crashAttribution = e.second.asString();
        else bad("crash: unknown key or wrong type \"" + e.first + "\"");
      }
      if (c.crashId.empty()) bad("crash: missing systemId");
      if (!isKnownCrashAttribution(c.crashAttribution)) badValue("crash: unknown attribution \"" + c.crashAttribution + "\"");
    } else if (k == "seed") {
      if (!v.isNumber()) bad("seed: expected a number");
      if (!v.isInteger(0, 9007199254740991.0)) badValue("seed: expected a non-negative integer");
      c.hasSeed = true;
      c.seed = static_cast<uint64_t>(v.asInt());
    } else if (k == "cancel") {
      if (!v.isString()) bad("cancel: expected \"notImplemented\" or \"honoured\"");
      if (v.asString() == "notImplemented") c.cancel = false;
      else if (v.asString() == "honoured") c.cancel = true;
      else badValue("cancel: expected \"notImplemented\" or \"honoured\"");
      c.hasCancel = true;
    } else if (k == "removeNotAttached") {
      if (!v.isString()) bad("removeNotAttached: expected \"notFound\", \"invalidState\" or \"success\"");
      if (v.asString() == "notFound") c.removeNotAttached = HCS_E_NOT_FOUND;
      else if (v.asString() == "invalidState") c.removeNotAttached = HCS_E_INVALID_STATE;
      else if (v.asString() == "success") c.removeNotAttached = HCS_S_OK;
      else badValue("removeNotAttached: expected \"notFound\", \"invalidState\" or \"success\"");
      c.hasRemoveNotAttached = true;
    } else if (k == "releaseHangs") {
      if (!v.isBool()) bad("releaseHangs: expected a boolean");
      c.releaseHangs = v.asBool();
    } else if (k == "guestDial") {
      if (!v.isString()) bad("guestDial: expected \"auto\" or \"never\"");
      if (v.asString() != "auto" && v.asString() != "never") badValue("guestDial: expected \"auto\" or \"never\"");
      c.hasGuestDial = true;
      c.guestDial = v.asString() == "auto";
    } else if (k == "hvsockDir") {
      if (!v.isString() && !v.isNull()) bad("hvsockDir: expected a directory or null");
      if (v.isString() && v.asString().empty()) badValue("hvsockDir: must not be empty");
      c.hasHvsockDir = true;
      c.hvsockDir = v.isString() ? v.asString() : std::string();
    } else if (k == "guestNotify") {
      if (!v.isObject()) bad("guestNotify: expected an object {\"systemId\", \"containerId\"?, \"type\"?}");
      c.hasGuestNotify = true;
      Json body = Json::object();
      body.set("ContainerId", Json::string(gcs::kNullContainerId));
      body.set("ActivityId", Json::string(gcs::kNullContainerId));
      body.set("Type", Json::string("UnexpectedExit"));
      body.set("Operation", Json::string("None"));
      body.set("Result", Json::number(0));
      for (const auto &e : v.members()) {
        if (!e.second.isString()) bad("guestNotify." + e.first + ": expected a string");
        if (e.first == "systemId") c.notifyId = e.second.asString();
        else if (e.first == "containerId") body.set("ContainerId", e.second);
        else if (e.first == "type") body.set("Type", e.second);
        else bad("guestNotify: unknown key \"" + e.first + "\"");
      }
      if (c.notifyId.empty()) bad("guestNotify: missing systemId");
      c.notifyBody = body;
    } else if (k == "guestRequestWithoutGuestConnection") {
      if (!v.isString()) bad("guestRequestWithoutGuestConnection: expected \"accept\" or \"refuse\"");
      if (v.asString() != "accept" && v.asString() != "refuse")
        badValue("guestRequestWithoutGuestConnection: expected \"accept\" or \"refuse\"");
      c.hasRefuseGuestRequests = true;
      c.refuseGuestRequests = v.asString() == "refuse";
    } else {
      bad("configuration: unknown key \"" + k + "\"");
    }
  }
  return c;
}

}  // namespace

bool isBridgeFunction(const std::string &fn) {
  return fn.rfind("bridge:", 0) == 0 && gcs::requestTypeOf(fn.substr(7)) != 0;
}

bool isKnownFunction(const std::string &fn) {
  for (const char *f : kFunctions)
    if (fn == f) return true;
  return isBridgeFunction(fn);
}

bool refuseGuestRequestWithoutGuestConnection() { return gRefuseGuestRequests.load(); }

HRESULT applyConfig(const std::string &utf8, std::string &error) {
  Json doc;
  if (!parseJson(utf8, doc, error)) {
    error = "configuration is not valid JSON: " + error;
    return HCS_E_INVALID_JSON;
  }
  ParsedConfig c;
  try {
    c = parseConfig(doc);
  } catch (const ConfigError &e) {
    error = e.message;
    return e.hr;
  }
  Settings &s = settings();
  if (c.reset) {
    gCancelHonoured = false;
    gRefuseGuestRequests = kRefuseGuestRequestsDefault;
    gcsReset();
    gRemoveNotAttached = HCS_E_NOT_FOUND;
    {
      std::lock_guard<std::mutex> lock(s.m);
      s.faults.clear();
      s.refreshLocked();
    }
    terminateQueuedOperations();
    Core &co = core();
    std::lock_guard<std::mutex> lock(co.modelMu);
    dropAllLocked();
    try {
      saveStateLocked();
    } catch (const HcsFailure &f) {
      error = f.message;
      return HCS_E_FAIL;
    }
  }
  {
    std::lock_guard<std::mutex> lock(s.m);
    if (c.clearFaults) s.faults.clear();
    if (c.hasFaults) s.faults = c.faults;
    if (c.hasLatencyMs) s.base.ms = c.latencyMs;
    if (c.hasJitterMs) s.base.jitterMs = c.jitterMs;
    if (c.hasLatency) s.perFn = c.perFn;
    if (c.hasSeed) s.rng.seed(c.seed);
    s.refreshLocked();
  }
  if (c.hasCrash && !crashSystem(c.crashId, c.crashAttribution, error, false)) return HCS_E_INVALIDARG;
  if (c.hasConcurrency) setConcurrencyLimit(c.concurrency);
  if (c.hasCancel) gCancelHonoured = c.cancel;
  if (c.hasRemoveNotAttached) gRemoveNotAttached = c.removeNotAttached;
  if (c.releaseHangs) {
    releaseHungOperations();
    gcsReleaseHangs();
  }
  if (c.hasRefuseGuestRequests) gRefuseGuestRequests = c.refuseGuestRequests;
  if (c.hasGuestDial) gcsSetDial(c.guestDial);
  if (c.hasHvsockDir) gcsSetDir(c.hvsockDir);
  if (c.hasGuestNotify && !gcsNotify(c.notifyId, c.notifyBody, error)) return HCS_E_INVALIDARG;
  if (c.hasTrace) setTracePath(c.trace);
  if (c.hasStateFile) {
    Core &co = core();
    std::lock_guard<std::mutex> lock(co.modelMu);
    if (c.stateFile.empty()) {
      co.stateFile.clear();
    } else if (!loadStateLocked(c.stateFile, error)) {
      return HCS_E_INVALIDARG;
    } else {
      // Running VMs of another process: their guests' GCS redials (the HEAD GCS redials after a drop).
      gcsPoke();
      for (const auto &e : co.registry)
        if (e.second->sys.state == "Running") gcsVmStarted(e.second, true);
    }
  }
  return HCS_S_OK;
}

void applyEnvironmentConfig() {
  std::string err;
  if (const char *cfg = std::getenv("HCSSIM_CONFIG")) {
    if (*cfg && applyConfig(cfg, err) != HCS_S_OK) std::fprintf(stderr, "hcssim: HCSSIM_CONFIG ignored: %s\n", err.c_str());
  }
  Json shorthand = Json::object();
  auto number = [&](const char *env, const char *key) {
    const char *v = std::getenv(env);
    if (!v || !*v) return;
    char *end = nullptr;
    double d = std::strtod(v, &end);
    if (end && *end == 0) shorthand.set(key, Json::number(d));
    else std::fprintf(stderr, "hcssim: %s=%s is not a number; ignored\n", env, v);
  };
  number("HCSSIM_LATENCY_MS", "latencyMs");
  number("HCSSIM_JITTER_MS", "jitterMs");
  number("HCSSIM_CONCURRENCY", "concurrency");
  if (const char *t = std::getenv("HCSSIM_TRACE"))
    if (*t) shorthand.set("trace", Json::string(t));
  if (const char *f = std::getenv("HCSSIM_STATE_FILE"))
    if (*f) shorthand.set("stateFile", Json::string(f));
  if (!shorthand.members().empty() && applyConfig(toJson(shorthand), err) != HCS_S_OK)
    std::fprintf(stderr, "hcssim: environment configuration ignored: %s\n", err.c_str());
}

double pickBridgeLatencyMs(const std::string &fn) {
  Settings &s = settings();
  std::lock_guard<std::mutex> lock(s.m);
  auto it = s.perFn.find(fn);
  if (it == s.perFn.end()) return 0;
  double ms = it->second.ms;
  if (it->second.jitterMs > 0) ms += std::uniform_real_distribution<double>(0.0, it->second.jitterMs)(s.rng);
  return ms;
}

double pickLatencyMs(const char *fn) {
  Settings &s = settings();
  if (s.noLatency) return 0;
  std::lock_guard<std::mutex> lock(s.m);
  Latency l = s.base;
  auto it = s.perFn.find(fn);
  if (it != s.perFn.end()) l = it->second;
  double ms = l.ms;
  if (l.jitterMs > 0) ms += std::uniform_real_distribution<double>(0.0, l.jitterMs)(s.rng);
  return ms;
}

FaultHit matchFault(const char *fn, const Json *doc) {
  return matchFault(fn, [doc] { return doc; });
}

FaultHit matchFault(const char *fn, const std::function<const Json *()> &docOf) {
  Settings &s = settings();
  FaultHit hit;
  if (s.noFaults) return hit;
  std::lock_guard<std::mutex> lock(s.m);
  if (s.faults.empty()) return hit;
  // The document is looked at only when a fault for `fn` matches on its content.
  bool looked = false;
  std::string path, resourceType;
  bool hasPath = false, hasGuest = false;
  auto look = [&] {
    if (looked) return;
    looked = true;
    const Json *doc = docOf();
    if (!doc) return;
    resourceType = gcs::resourceTypeOf(*doc);
    if (doc->isObject()) {
      const Json *p = doc->get("ResourcePath");
      if (p && p->isString()) {
        path = p->asString();
        hasPath = true;
      }
      const Json *g = doc->get("GuestRequest");
      hasGuest = g && !g->isNull();
    }
  };
  for (auto &f : s.faults) {
    if (f.fn != fn) continue;
    if (f.hasResourcePath || f.guestOnly || f.hasResourceType) look();
    if (f.hasResourcePath && (!hasPath || !globMatch(f.resourcePath.c_str(), path.c_str()))) continue;
    if (f.guestOnly && !hasGuest) continue;
    if (f.hasResourceType && !globMatch(f.resourceType.c_str(), resourceType.c_str())) continue;
    ++f.count;
    if (!hit.hit && (f.nth == 0 || f.count == f.nth)) {
      hit.hit = true;
      hit.hr = f.hr;
      hit.message = f.message;
      hit.guestOnly = f.guestOnly;
      hit.hang = f.hang;
      hit.crash = f.crash;
      hit.attribution = f.attribution;
      hit.hasHr = f.hasHr;
      hit.delayMs = f.delayMs;
      hit.drop = f.drop;
      hit.unknownId = f.unknownId;
      hit.oversized = f.oversized;
      hit.badJson = f.badJson;
    }
  }
  return hit;
}

namespace {
thread_local bool tAbsentRemovalSucceeds = false;
}  // namespace

AbsentRemovalSucceeds::AbsentRemovalSucceeds() : previous_(tAbsentRemovalSucceeds) { tAbsentRemovalSucceeds = true; }
AbsentRemovalSucceeds::~AbsentRemovalSucceeds() { tAbsentRemovalSucceeds = previous_; }

void notAttached(const std::string &message) {
  if (tAbsentRemovalSucceeds) return;
  HRESULT hr = gRemoveNotAttached.load();
  if (hr < 0) fail(hr, message);
}

bool cancelHonoured() { return gCancelHonoured.load(); }

void countInventoryQuery(bool testHelper) { ++(testHelper ? gInventoryQueriesByTestHelpers : gInventoryQueries); }

std::string simulatorStatsJson() {
  SchedulerStats st = schedulerStats();
  Json inv = Json::object();
  inv.set("Library", Json::number(static_cast<double>(gInventoryQueries.load())));
  inv.set("TestHelper", Json::number(static_cast<double>(gInventoryQueriesByTestHelpers.load())));
  Json ops = Json::object();
  ops.set("Executing", Json::number(st.executing));
  ops.set("Waiting", Json::number(st.waiting));
  ops.set("Hung", Json::number(st.hung));
  ops.set("Open", Json::number(st.open));
  Json doc = Json::object();
  doc.set("InventoryQueries", inv);
  doc.set("Operations", ops);
  doc.set("Guest", gcsStats());
  doc.set("Calls", callCountsJson());
  return toJson(doc);
}

}  // namespace hcssim
