// The fake guest's side of the GCS bridge protocol; see gcs-protocol.h.
#include "gcs-protocol.h"

#include <cstdio>
#include <cstring>
#include <optional>

#include "config.h"
#include "model.h"
#include "uuid.h"

namespace hcssim {
namespace gcs {

const char *const kNullContainerId = "00000000-0000-0000-0000-000000000000";
const char *const kParentAddress = "894cc2d6-9d79-424f-93fe-42969ae6d8d1";
const char *const kLcowGcsService = "40000000-facb-11e6-bd58-64006a7986d3";
const char *const kWcowGcsService = "acef5661-84a1-4e44-856b-6245e69f4620";
const char *const kLcowEntropyService = "00000001-facb-11e6-bd58-64006a7986d3";
const char *const kLcowLogService = "0000006d-facb-11e6-bd58-64006a7986d3";

namespace {

struct Rpc {
  uint32_t code;
  const char *name;
};
const Rpc kRpcs[] = {
    {0x00100101u, "Create"},          {0x00100201u, "Start"},          {0x00100301u, "ShutdownGraceful"},
    {0x00100401u, "ShutdownForced"},  {0x00100501u, "ExecuteProcess"}, {0x00100601u, "WaitForProcess"},
    {0x00100701u, "SignalProcess"},   {0x00100801u, "ResizeConsole"},  {0x00100901u, "GetProperties"},
    {0x00100a01u, "ModifySettings"},  {0x00100b01u, "NegotiateProtocol"}, {0x00100c01u, "DumpStacks"},
    {0x00100d01u, "DeleteContainerState"}, {0x00100e01u, "UpdateContainer"}, {0x00100f01u, "LifecycleNotification"},
    {0x00200101u, "ModifyServiceSettings"},
};

void putLe(std::string &s, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
uint64_t getLe(const char *p, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

// A failure the handlers raise: becomes the response's Result and ErrorMessage.
struct GuestError {
  HRESULT hr;
  std::string message;
};
[[noreturn]] void guestFail(HRESULT hr, const std::string &message) { throw GuestError{hr, message}; }

const Json *member(const Json &o, const char *key) {
  const Json *v = o.isObject() ? o.get(key) : nullptr;
  return v && !v->isNull() ? v : nullptr;
}

std::string stringMember(const Json &o, const char *key) {
  const Json *v = member(o, key);
  if (v && !v->isString()) guestFail(kInvalidJson, std::string("json: ") + key + " is not a string");
  return v ? v->asString() : std::string();
}

Json capabilities(const Session &s) {
  Json schema = Json::object();
  schema.set("Major", Json::number(2));
  schema.set("Minor", Json::number(1));
  Json versions = Json::array();
  versions.push(schema);
  Json guest = Json::object();
  for (const char *k : {"NamespaceAddRequestSupported", "SignalProcessSupported", "DumpStacksSupported",
                        "DeleteContainerStateSupported"})
    guest.set(k, Json::boolean(true));
  Json caps = Json::object();
  if (s.profile == Profile::Wcow) {
    // The WCOW inbox GCS asks the host to create and start the hosting system and sends no
    // RuntimeOsType (inferred from hcsshim's handling, unverified; gcs-bridge.md §4, §7).
    caps.set("SendHostCreateMessage", Json::boolean(true));
    caps.set("SendHostStartMessage", Json::boolean(true));
    for (const char *k : {"UpdateContainerSupported", "LogForwardingSupported", "HostProcessContainerSupported"})
      guest.set(k, Json::boolean(true));
  }
  caps.set("SupportedSchemaVersions", versions);
  if (s.profile == Profile::Lcow) caps.set("RuntimeOsType", Json::string("Linux"));
  caps.set("GuestDefinedCapabilities", guest);
  return caps;
}

uint32_t versionMember(const Json &body, const char *key) {
  const Json *v = member(body, key);
  if (!v) return 0;
  if (!v->isNumber() || !v->isInteger(0, 4294967295.0)) guestFail(kInvalidJson, std::string("json: ") + key + " is not a uint32");
  return static_cast<uint32_t>(v->asInt());
}

void negotiate(Session &s, const Json &body, Json &extra) {
  uint32_t lo = versionMember(body, "MinimumVersion");
  uint32_t hi = versionMember(body, "MaximumVersion");
  if (hi < 4 || lo > 4)
    guestFail(kUnsupportedProtocolVersion, "bridge: unsupported protocol version range [" + std::to_string(lo) + ", " +
                                               std::to_string(hi) + "], the guest speaks 4");
  s.negotiated = true;
  extra.set("Version", Json::number(4));
  extra.set("Capabilities", capabilities(s));
}

bool allowed(const std::string &rt, std::initializer_list<const char *> types) {
  for (const char *t : types)
    if (rt == t) return true;
  return false;
}

// Resource types each guest knows, with the request types it supports (gcs-bridge.md §5.3, §7).
void checkResource(const Session &s, const std::string &type, const std::string &rt) {
  bool lcow = s.profile == Profile::Lcow;
  bool known;
  bool ok;
  if (type == "MappedVirtualDisk" || type == "MappedDirectory" || type == "CombinedLayers" || type == "Network") {
    known = true;
    ok = allowed(rt, {"Add", "Remove"});
  } else if (type == "VPMemDevice") {
    known = lcow;
    ok = allowed(rt, {"Add", "Remove"});
  } else if (type == "SCSIDevice") {
    known = lcow;
    ok = rt == "Remove";
  } else if (type == "VPCIDevice") {
    known = lcow;
    ok = rt == "Add";
  } else if (type == "MappedVirtualDiskForContainerScratch" || type == "NetworkNamespace") {
    known = !lcow;
    ok = allowed(rt, {"Add", "Remove"});
  } else if (type == "HvSocket") {
    known = !lcow;
    ok = rt == "Update";
  } else {
    known = false;
    ok = false;
  }
  if (!known) guestFail(kEFail, "invalid ResourceType '" + type + "'");
  if (!ok) guestFail(kEFail, "the RequestType \"" + rt + "\" is not supported");
}

// Guest resources the simulator's model does not track: answered here.
bool handleUnmodelled(Session &s, const std::string &type, const std::string &rt, const Json &settings) {
  if (type == "HvSocket") {
    std::string local = canonicalGuid(stringMember(settings, "LocalAddress"));
    std::string parent = canonicalGuid(stringMember(settings, "ParentAddress"));
    if (local != s.runtimeId)
      guestFail(kEFail, "HvSocket: LocalAddress \"" + stringMember(settings, "LocalAddress") + "\" is not this VM's RuntimeId");
    if (parent != kParentAddress)
      guestFail(kEFail, "HvSocket: ParentAddress \"" + stringMember(settings, "ParentAddress") + "\" is not " + kParentAddress);
    s.hvSocketConfigured = true;
    return true;
  }
  if (type == "NetworkNamespace") {
    std::string id = stringMember(settings, "ID");
    if (id.empty()) id = stringMember(settings, "Id");
    if (id.empty()) guestFail(kInvalidJson, "NetworkNamespace: missing ID");
    if (rt == "Add") {
      if (!s.namespaces.insert(id).second) guestFail(kEFail, "network namespace " + id + " already exists");
    } else if (!s.namespaces.erase(id)) {
      guestFail(kEFail, "network namespace " + id + " does not exist");
    }
    return true;
  }
  if (type == "Network") {
    // The simulator models no network adapters on the host, so the guest never sees one appear.
    std::string id = stringMember(settings, "ID");
    if (id.empty()) id = stringMember(settings, "AdapterId");
    guestFail(kEFail, "network adapter " + id + " not found (the simulator models no network adapters)");
  }
  return false;
}

void modifySettings(Session &s, const Json &body, const ApplyGuest &apply) {
  if (!body.isObject()) guestFail(kInvalidJson, "json: the request is not an object");
  std::string container = stringMember(body, "ContainerId");
  if (container != kNullContainerId)
    guestFail(kSystemNotFound, "container \"" + container + "\" not found (the guest runs no containers)");
  const Json *req = member(body, "Request");
  Json request = req ? *req : Json::object();
  if (!request.isObject()) guestFail(kInvalidJson, "json: Request is not an object");
  std::string type = stringMember(request, "ResourceType");
  std::string rt = stringMember(request, "RequestType");
  if (rt.empty()) rt = "Add";  // UnmarshalContainerModifySettings: an empty RequestType means Add
  checkResource(s, type, rt);
  const Json *settings = member(request, "Settings");
  Json normalised = Json::object();
  normalised.set("RequestType", Json::string(rt));
  normalised.set("ResourceType", Json::string(type));
  normalised.set("Settings", settings ? *settings : Json::object());
  if (handleUnmodelled(s, type, rt, settings ? *settings : Json::object())) return;
  try {
    // The Linux GCS removes what it does not have without complaint (unmount of a missing path,
    // unplug of a missing SCSI device), except a VPMEM mapping, whose device-mapper target must
    // exist to be removed. The inbox Windows GCS's answer is unverified: it keeps E_FAIL.
    std::optional<AbsentRemovalSucceeds> absentOk;
    if (s.profile == Profile::Lcow && rt == "Remove" && !(type == "VPMemDevice" && settings && member(*settings, "MappingInfo")))
      absentOk.emplace();
    apply(normalised);
  } catch (const HcsFailure &f) {
    // Shape errors keep the guest's INVALID_JSON; every semantic refusal is E_FAIL (the real GCS
    // codes for these are unverified, gcs-bridge.md §7).
    guestFail(f.hr == HCS_E_INVALID_JSON ? kInvalidJson : kEFail, f.message);
  }
}

void createOrStart(Session &s, bool create, const Json &body) {
  if (!body.isObject()) guestFail(kInvalidJson, "json: the request is not an object");
  std::string container = stringMember(body, "ContainerId");
  if (container != kNullContainerId) guestFail(kENotImpl, "the simulator's guest creates no containers (\"" + container + "\")");
  if (create) {
    std::string config = stringMember(body, "ContainerConfig");
    Json doc;
    std::string err;
    if (!parseJson(config, doc, err) || !doc.isObject()) guestFail(kInvalidJson, "ContainerConfig is not a JSON document in a string: " + err);
    const Json *st = member(doc, "SystemType");
    if (!st || !st->isString() || st->asString() != "Container")
      guestFail(kInvalidJson, "ContainerConfig: SystemType must be \"Container\" (a v1 document)");
    if (s.created) guestFail(kSystemAlreadyExists, "the hosting system was already created");
    s.created = true;
  } else {
    if (!s.created) guestFail(kSystemNotFound, "the hosting system was not created");
    if (s.started) guestFail(kInvalidState, "the hosting system was already started");
    s.started = true;
  }
}

}  // namespace

std::string encode(uint32_t type, uint64_t id, const std::string &body) {
  std::string out;
  out.reserve(kHeaderSize + body.size());
  putLe(out, type, 4);
  putLe(out, static_cast<uint64_t>(kHeaderSize + body.size()) & 0xFFFFFFFFu, 4);
  putLe(out, id, 8);
  out += body;
  return out;
}

bool FrameReader::feed(const char *data, size_t n) {
  if (!error_.empty()) return false;
  if (pos_ > 0 && pos_ == buf_.size()) {
    buf_.clear();
    pos_ = 0;
  }
  buf_.append(data, n);
  if (buf_.size() - pos_ >= kHeaderSize) {
    uint32_t size = static_cast<uint32_t>(getLe(buf_.data() + pos_ + 4, 4));
    if (size < kHeaderSize) error_ = "message size " + std::to_string(size) + " is below the header size";
    else if (size > max_) error_ = "message size " + std::to_string(size) + " is above " + std::to_string(max_);
  }
  return error_.empty();
}

bool FrameReader::next(Message &out) {
  if (!error_.empty() || buf_.size() - pos_ < kHeaderSize) return false;
  const char *h = buf_.data() + pos_;
  uint32_t size = static_cast<uint32_t>(getLe(h + 4, 4));
  if (size < kHeaderSize || size > max_) {
    error_ = "message size " + std::to_string(size) + " is out of range";
    return false;
  }
  if (buf_.size() - pos_ < size) return false;
  out.type = static_cast<uint32_t>(getLe(h, 4));
  out.id = getLe(h + 8, 8);
  out.body.assign(h + kHeaderSize, size - kHeaderSize);
  pos_ += size;
  // Validate the next header early so a broken stream is reported without waiting for more bytes.
  if (buf_.size() - pos_ >= kHeaderSize) {
    uint32_t nextSize = static_cast<uint32_t>(getLe(buf_.data() + pos_ + 4, 4));
    if (nextSize < kHeaderSize || nextSize > max_) error_ = "message size " + std::to_string(nextSize) + " is out of range";
  }
  if (pos_ > 65536 && pos_ * 2 > buf_.size()) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  return true;
}

std::string messageName(uint32_t type) {
  uint32_t kind = type & kKindMask;
  if (type == kContainerNotification) return "ContainerNotification";
  if (kind == kRequest || kind == kResponse)
    for (const Rpc &r : kRpcs)
      if ((type & ~kKindMask) == r.code) return r.name;
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", type);
  return buf;
}

uint32_t requestTypeOf(const std::string &name) {
  for (const Rpc &r : kRpcs)
    if (name == r.name) return kRequest | r.code;
  return 0;
}

Json responseBody(HRESULT hr, const std::string &activityId, const std::string &message) {
  Json b = Json::object();
  b.set("Result", Json::number(hr));
  b.set("ActivityId", Json::string(activityId));
  if (hr < 0) {
    b.set("ErrorMessage", Json::string(message));
    Json rec = Json::object();
    rec.set("Result", Json::number(hr));
    rec.set("Message", Json::string(message));
    rec.set("ModuleName", Json::string("gcs"));
    rec.set("FileName", Json::string(""));
    rec.set("Line", Json::number(4294967295.0));
    rec.set("FunctionName", Json::string(""));
    Json recs = Json::array();
    recs.push(rec);
    b.set("ErrorRecords", recs);
  }
  return b;
}

std::string resourceTypeOf(const Json &body) {
  const Json *req = member(body, "Request");
  const Json *t = req ? member(*req, "ResourceType") : nullptr;
  return t && t->isString() ? t->asString() : std::string();
}

Reply handle(Session &s, const Message &m, const ApplyGuest &apply) {
  Reply r;
  r.type = responseTypeOf(m.type);
  std::string err;
  Json body;
  bool parsed = parseJson(m.body, body, err);
  r.traceDoc = parsed ? body : Json::string(m.body);
  std::string activity = kNullContainerId;
  if (parsed) {
    const Json *a = member(body, "ActivityId");
    if (a && a->isString()) activity = a->asString();
  }
  Json extra = Json::object();
  HRESULT hr = 0;
  std::string message;
  try {
    uint32_t code = m.type & ~kKindMask;
    bool request = (m.type & kKindMask) == kRequest;
    // Handlers are keyed by (type, negotiated version): before NegotiateProtocol only it is known;
    // Create/Start only in the WCOW profile.
    bool known = request && (code == kNegotiateProtocol ||
                             (s.negotiated && (code == kModifySettings ||
                                               (s.profile == Profile::Wcow && (code == kCreate || code == kStart)))));
    if (!known) {
      char buf[96];
      std::snprintf(buf, sizeof buf, "bridge: function not supported, header type: %u", m.type);
      guestFail(kENotImpl, buf);
    }
    if (!parsed) guestFail(kInvalidJson, "json: " + err);
    if (code == kNegotiateProtocol) negotiate(s, body, extra);
    else if (code == kModifySettings) modifySettings(s, body, apply);
    else createOrStart(s, code == kCreate, body);
  } catch (const GuestError &e) {
    hr = e.hr;
    message = e.message;
  }
  Json resp = responseBody(hr, activity, message);
  for (auto &e : extra.members()) resp.set(e.first, e.second);
  r.hr = hr;
  r.body = toJson(resp);
  return r;
}

}  // namespace gcs
}  // namespace hcssim
