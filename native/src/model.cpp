#include "model.h"

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include "config.h"
#include "uuid.h"

namespace hcssim {

const char *const kVsmbGuestPrefix = "\\\\?\\VMSMB\\VSMB-{dcc079ae-60ba-4d07-847c-3493609c0870}\\";

void fail(HRESULT hr, const std::string &message) { throw HcsFailure{hr, message}; }
void invalidJson(const std::string &message) { throw HcsFailure{HCS_E_INVALID_JSON, message}; }

namespace {

// hcsshim's controller GUIDs, index 0..3 (the guest addresses controllers by index).
const char *const kStandardControllers[4] = {
    "df6d0690-79e5-55b6-a5ec-c1e2f77f580a", "0110f83b-de10-5172-a266-78bca56bf50a",
    "b5d2d8d4-3a75-51bf-945b-3444dc6b8579", "305891a9-b251-5dfe-91a2-c25d9212275b"};

const int kMaxLun = 64;
const int64_t kMaxVpmemCount = 128;
const int64_t kPlan9Port = 564;

const char *typeName(const Json &j) {
  switch (j.type()) {
    case Json::Type::Null: return "null";
    case Json::Type::Bool: return "boolean";
    case Json::Type::Number: return "number";
    case Json::Type::String: return "string";
    case Json::Type::Array: return "array";
    case Json::Type::Object: return "object";
  }
  return "?";
}

void requireObject(const Json &j, const std::string &what) {
  if (!j.isObject()) invalidJson(what + ": expected an object, got " + typeName(j));
}

// Gives each member of `o` to seen(i, value), i its key's index in names[0..n), in one pass; a key
// not among them fails (INVALID_JSON "<what>: unknown field").
template <typename Seen>
void eachKnownField(const Json &o, const std::string &what, const std::string_view *names, size_t n, Seen seen) {
  for (const auto &m : o.members()) {
    size_t i = 0;
    while (i < n && std::string_view(m.first) != names[i]) ++i;
    if (i == n) invalidJson(what + ": unknown field \"" + m.first + "\"");
    seen(i, m.second);
  }
}

void checkFields(const Json &o, const std::string &what, std::initializer_list<std::string_view> allowed) {
  eachKnownField(o, what, allowed.begin(), allowed.size(), [](size_t, const Json &) {});
}

// Absent and null are treated alike (Go's omitempty never emits null, but JSON.stringify of undefined
// drops the key, and null is tolerated as "absent").
const Json *field(const Json &o, const char *key) {
  const Json *v = o.get(key);
  if (v && v->isNull()) return nullptr;
  return v;
}

// The string `v` (the value of `key`, as field() gives it), empty when absent, without a copy.
const std::string &optStringValue(const Json *v, const char *key, const std::string &what, bool required = false,
                                  bool nonEmpty = false) {
  static const std::string empty;
  if (!v) {
    if (required) invalidJson(what + ": missing required field \"" + key + "\"");
    return empty;
  }
  if (!v->isString()) invalidJson(what + "." + key + ": expected a string, got " + typeName(*v));
  if (nonEmpty && v->asString().empty()) invalidJson(what + "." + key + ": must not be empty");
  return v->asString();
}

// The string at `key` (empty when absent), without a copy.
const std::string &optString(const Json &o, const char *key, const std::string &what, bool required = false,
                             bool nonEmpty = false) {
  return optStringValue(field(o, key), key, what, required, nonEmpty);
}

bool optBoolValue(const Json *v, const char *key, const std::string &what) {
  if (!v) return false;
  if (!v->isBool()) invalidJson(what + "." + key + ": expected a boolean, got " + typeName(*v));
  return v->asBool();
}

bool optBool(const Json &o, const char *key, const std::string &what) { return optBoolValue(field(o, key), key, what); }

// checkFields(o, what, names), and the value of each name as field() gives it (nullptr when absent
// or null), in one pass over the members (a parsed object has no duplicate keys).
template <size_t N>
void knownFields(const Json &o, const std::string &what, const std::string_view (&names)[N], const Json *(&values)[N]) {
  for (auto &v : values) v = nullptr;
  eachKnownField(o, what, names, N, [&values](size_t i, const Json &v) {
    if (!v.isNull()) values[i] = &v;
  });
}

int64_t optInt(const Json &o, const char *key, const std::string &what, double lo, double hi, int64_t def,
               bool required = false) {
  const Json *v = field(o, key);
  if (!v) {
    if (required) invalidJson(what + ": missing required field \"" + key + "\"");
    return def;
  }
  if (!v->isNumber()) invalidJson(what + "." + key + ": expected a number, got " + typeName(*v));
  if (!v->isInteger(lo, hi)) invalidJson(what + "." + key + ": expected an integer in [" +
                                         std::to_string(static_cast<long long>(lo)) + ", " +
                                         std::to_string(static_cast<long long>(hi)) + "]");
  return v->asInt();
}

void optStringArray(const Json &o, const char *key, const std::string &what) {
  const Json *v = field(o, key);
  if (!v) return;
  if (!v->isArray()) invalidJson(what + "." + key + ": expected an array, got " + typeName(*v));
  for (const auto &item : v->items())
    if (!item.isString()) invalidJson(what + "." + key + ": expected an array of strings");
}

void optObjectAny(const Json &o, const char *key, const std::string &what) {
  const Json *v = field(o, key);
  if (v && !v->isObject()) invalidJson(what + "." + key + ": expected an object, got " + typeName(*v));
}

// Decimal without sign or leading zeros.
bool parseDecimal(std::string_view s, int64_t &out) {
  if (s.empty() || s.size() > 15) return false;
  if (s.size() > 1 && s[0] == '0') return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

bool isUnder(const std::string &path, const std::string &dir) {
  if (dir.empty()) return false;
  if (path == dir) return true;
  if (path.size() <= dir.size() || path.compare(0, dir.size(), dir) != 0) return false;
  char last = dir.back();
  if (last == '/' || last == '\\') return true;
  char sep = path[dir.size()];
  return sep == '/' || sep == '\\';
}

// ------------------------------------------------------------------------------------------------
// Host settings shapes

void validateAttachment(const Json &s, const std::string &what) {
  requireObject(s, what);
  enum { kType, kPath, kReadOnly, kEvd, kCachingMode, kFirstFlag, kCount = 12 };
  static constexpr std::string_view kNames[kCount] = {
      "Type", "Path", "ReadOnly", "ExtensibleVirtualDiskType", "CachingMode", "IgnoreFlushes", "NoWriteHardening",
      "DisableExpansionOptimization", "IgnoreRelativeLocator", "CaptureIoAttributionContext", "SupportCompressedVolumes",
      "AlwaysAllowSparseFiles"};
  const Json *f[kCount];
  knownFields(s, what, kNames, f);
  const std::string &type = optStringValue(f[kType], "Type", what, true);
  if (type != "VirtualDisk" && type != "PassThru" && type != "ExtensibleVirtualDisk")
    invalidJson(what + ".Type: \"" + type + "\" is not one of VirtualDisk, PassThru, ExtensibleVirtualDisk");
  optStringValue(f[kPath], "Path", what, true, true);
  optBoolValue(f[kReadOnly], "ReadOnly", what);
  const std::string &evd = optStringValue(f[kEvd], "ExtensibleVirtualDiskType", what);
  if (type == "ExtensibleVirtualDisk" && evd.empty())
    invalidJson(what + ": ExtensibleVirtualDiskType is required for Type ExtensibleVirtualDisk");
  for (int i = kFirstFlag; i < kCount; ++i) optBoolValue(f[i], kNames[i].data(), what);  // literals: NUL-terminated
  optStringValue(f[kCachingMode], "CachingMode", what);
}

void validateVsmbShare(const Json &s, const std::string &what, bool needPath) {
  requireObject(s, what);
  checkFields(s, what, {"Name", "Path", "AllowedFiles", "Options"});
  optString(s, "Name", what, true, true);
  optString(s, "Path", what, needPath, needPath);
  optStringArray(s, "AllowedFiles", what);
  const Json *opts = field(s, "Options");
  if (opts) {
    std::string ow = what + ".Options";
    requireObject(*opts, ow);
    checkFields(*opts, ow,
                {"ReadOnly", "ShareRead", "CacheIo", "NoOplocks", "TakeBackupPrivilege", "UseShareRootIdentity",
                 "NoDirectmap", "NoLocks", "NoDirnotify", "VmSharedMemory", "RestrictFileAccess",
                 "ForceLevelIIOplocks", "ReparseBaseLayer", "PseudoOplocks", "NonCacheIo", "PseudoDirnotify",
                 "SingleFileMapping"});
    for (const auto &m : opts->members())
      if (!m.second.isBool() && !m.second.isNull())
        invalidJson(ow + "." + m.first + ": expected a boolean, got " + typeName(m.second));
  }
}

void validateImageFormat(const Json &s, const std::string &what) {
  const std::string &f = optString(s, "ImageFormat", what, true);
  if (f != "Vhd1" && f != "Vhdx") invalidJson(what + ".ImageFormat: \"" + f + "\" is not one of Vhd1, Vhdx");
}

void validateVpmemDevice(const Json &s, const std::string &what) {
  requireObject(s, what);
  checkFields(s, what, {"HostPath", "ReadOnly", "ImageFormat"});
  optString(s, "HostPath", what, true, true);
  optBool(s, "ReadOnly", what);
  validateImageFormat(s, what);
}

void validateVpmemMapping(const Json &s, const std::string &what) {
  requireObject(s, what);
  checkFields(s, what, {"HostPath", "ImageFormat"});
  optString(s, "HostPath", what, true, true);
  validateImageFormat(s, what);
}

void validatePlan9Share(const Json &s, const std::string &what, bool add) {
  requireObject(s, what);
  checkFields(s, what, {"Name", "AccessName", "Path", "Port", "Flags", "AllowedFiles", "ReadOnly", "UseShareRootIdentity"});
  optString(s, "Name", what, true, true);
  optString(s, "AccessName", what);
  optString(s, "Path", what, add, add);
  int64_t port = optInt(s, "Port", what, 0, 65535, -1, add);
  if (port != -1 && port != kPlan9Port)
    fail(HCS_E_INVALIDARG, what + ".Port: must be " + std::to_string(kPlan9Port) + ", got " + std::to_string(port));
  optInt(s, "Flags", what, 0, 4294967295.0, 0);
  optStringArray(s, "AllowedFiles", what);
  optBool(s, "ReadOnly", what);
  optBool(s, "UseShareRootIdentity", what);
}

// ------------------------------------------------------------------------------------------------
// ResourcePath


// The elements of a ResourcePath (views into it): the first kMaxPathElements, and their count.
const size_t kMaxPathElements = 8;  // the longest ResourcePath has 7
struct PathElements {
  std::string_view e[kMaxPathElements];
  size_t n = 0;
  size_t size() const { return n; }
  const std::string_view &operator[](size_t i) const { return e[i]; }
};

PathElements splitSlash(const std::string &s) {
  PathElements parts;
  size_t start = 0;
  while (true) {
    size_t p = s.find('/', start);
    if (parts.n < kMaxPathElements)
      parts.e[parts.n] = std::string_view(s).substr(start, p == std::string::npos ? std::string::npos : p - start);
    ++parts.n;
    if (p == std::string::npos) break;
    start = p + 1;
  }
  return parts;
}

HostTarget parseResourcePath(const std::string &path) {
  static const std::string pipePrefix = "VirtualMachine/Devices/MappedPipes/";
  HostTarget t{};
  if (path.compare(0, pipePrefix.size(), pipePrefix) == 0) {
    t.kind = HostKind::Pipe;
    t.pipe = path.substr(pipePrefix.size());
    if (t.pipe.empty()) invalidJson("ResourcePath \"" + path + "\": missing pipe name");
    return t;
  }
  auto p = splitSlash(path);
  auto bad = [&](const std::string &why) { invalidJson("ResourcePath \"" + path + "\": " + why); };
  if (p.size() < 3 || p[0] != "VirtualMachine" || p[1] != "Devices") bad("unknown resource path");
  if (p[2] == "Scsi") {
    if (p.size() != 6 || p[4] != "Attachments") bad("expected VirtualMachine/Devices/Scsi/<controller GUID>/Attachments/<lun>");
    t.kind = HostKind::Scsi;
    t.guid = canonicalGuid(p[3]);
    if (t.guid.empty()) bad("\"" + std::string(p[3]) + "\" is not a GUID");
    if (!parseDecimal(p[5], t.lun)) bad("\"" + std::string(p[5]) + "\" is not a decimal LUN");
    return t;
  }
  if (p[2] == "VirtualSmb") {
    if (p.size() != 4 || p[3] != "Shares") bad("expected VirtualMachine/Devices/VirtualSmb/Shares");
    t.kind = HostKind::Vsmb;
    return t;
  }
  if (p[2] == "Plan9") {
    if (p.size() != 4 || p[3] != "Shares") bad("expected VirtualMachine/Devices/Plan9/Shares");
    t.kind = HostKind::Plan9;
    return t;
  }
  if (p[2] == "VirtualPci") {  // vpci.cpp
    if (p.size() != 4) bad("expected VirtualMachine/Devices/VirtualPci/<VMBus GUID>");
    t.kind = HostKind::Vpci;
    t.guid = canonicalGuid(p[3]);
    if (t.guid.empty()) bad("\"" + std::string(p[3]) + "\" is not a GUID");
    return t;
  }
  if (p[2] == "VirtualPMem") {
    if ((p.size() != 5 && p.size() != 7) || p[3] != "Devices")
      bad("expected VirtualMachine/Devices/VirtualPMem/Devices/<n>[/Mappings/<offset>]");
    if (!parseDecimal(p[4], t.device)) bad("\"" + std::string(p[4]) + "\" is not a decimal device number");
    if (p.size() == 5) {
      t.kind = HostKind::VpmemDevice;
      return t;
    }
    if (p[5] != "Mappings") bad("expected VirtualMachine/Devices/VirtualPMem/Devices/<n>/Mappings/<offset>");
    if (!parseDecimal(p[6], t.offset)) bad("\"" + std::string(p[6]) + "\" is not a decimal byte offset");
    t.kind = HostKind::VpmemMapping;
    return t;
  }
  bad("unknown resource path");
  return t;
}

// ------------------------------------------------------------------------------------------------
// Guest shapes

enum class GuestForm { Linux, Windows };

bool hasAny(const Json &s, std::initializer_list<const char *> keys) {
  for (const char *k : keys)
    if (field(s, k)) return true;
  return false;
}

GuestForm mvdForm(const System &sys, const Json &s) {
  if (sys.os == GuestOs::Windows) return GuestForm::Windows;
  if (sys.os == GuestOs::Linux) return GuestForm::Linux;
  return field(s, "ContainerPath") ? GuestForm::Windows : GuestForm::Linux;
}

GuestForm dirForm(const System &sys, const Json &s) {
  if (sys.os == GuestOs::Windows) return GuestForm::Windows;
  if (sys.os == GuestOs::Linux) return GuestForm::Linux;
  return hasAny(s, {"HostPath", "ContainerPath"}) ? GuestForm::Windows : GuestForm::Linux;
}

void validateVerity(const Json &s, const std::string &what) { optObjectAny(s, "VerityInfo", what); }

void validateGuestShape(const System &sys, const Json &gr) {
  const std::string what = "GuestRequest";
  requireObject(gr, what);
  checkFields(gr, what, {"RequestType", "ResourceType", "Settings"});
  const std::string &rt = optString(gr, "RequestType", what, true);
  const std::string &type = optString(gr, "ResourceType", what, true);
  if (rt != "Add" && rt != "Remove")
    invalidJson(what + ".RequestType: \"" + rt + "\" is not supported for " + type + " (Add, Remove)");
  const Json *settings = field(gr, "Settings");
  if (!settings) invalidJson(what + ": missing required field \"Settings\"");
  const std::string sw = what + ".Settings";
  requireObject(*settings, sw);
  const Json &s = *settings;
  if (type == "MappedVirtualDisk" || type == "MappedVirtualDiskForContainerScratch") {
    GuestForm form = type == "MappedVirtualDiskForContainerScratch" ? GuestForm::Windows : mvdForm(sys, s);
    if (form == GuestForm::Linux) {
      checkFields(s, sw + " (LCOWMappedVirtualDisk)",
                  {"MountPath", "Lun", "Controller", "Partition", "ReadOnly", "Encrypted", "Options", "BlockDev",
                   "EnsureFilesystem", "Filesystem", "VerityInfo"});
      optString(s, "MountPath", sw, true, true);
      optInt(s, "Lun", sw, 0, 255, 0);
      optInt(s, "Controller", sw, 0, 255, 0);
      optInt(s, "Partition", sw, 0, 9007199254740991.0, 0);
      for (const char *b : {"ReadOnly", "Encrypted", "BlockDev", "EnsureFilesystem"}) optBool(s, b, sw);
      optStringArray(s, "Options", sw);
      optString(s, "Filesystem", sw);
      validateVerity(s, sw);
    } else {
      checkFields(s, sw + " (WCOWMappedVirtualDisk)", {"ContainerPath", "Lun"});
      optString(s, "ContainerPath", sw, true, true);
      optInt(s, "Lun", sw, 0, 2147483647.0, 0);
    }
  } else if (type == "SCSIDevice") {
    if (rt != "Remove") invalidJson(what + ".RequestType: SCSIDevice supports only Remove");
    checkFields(s, sw + " (SCSIDevice)", {"Controller", "Lun"});
    optInt(s, "Controller", sw, 0, 255, 0);
    optInt(s, "Lun", sw, 0, 255, 0);
  } else if (type == "VPMemDevice") {
    checkFields(s, sw + " (LCOWMappedVPMemDevice)", {"DeviceNumber", "MountPath", "MappingInfo", "VerityInfo"});
    optInt(s, "DeviceNumber", sw, 0, 4294967295.0, 0);
    optString(s, "MountPath", sw, true, true);
    const Json *mi = field(s, "MappingInfo");
    if (mi) {
      std::string mw = sw + ".MappingInfo";
      requireObject(*mi, mw);
      checkFields(*mi, mw, {"DeviceOffsetInBytes", "DeviceSizeInBytes"});
      optInt(*mi, "DeviceOffsetInBytes", mw, 0, 9007199254740991.0, 0);
      optInt(*mi, "DeviceSizeInBytes", mw, 0, 9007199254740991.0, 0);
    }
    validateVerity(s, sw);
  } else if (type == "MappedDirectory") {
    if (dirForm(sys, s) == GuestForm::Linux) {
      checkFields(s, sw + " (LCOWMappedDirectory)", {"MountPath", "Port", "ShareName", "ReadOnly"});
      optString(s, "MountPath", sw, true, true);
      optString(s, "ShareName", sw, rt == "Add", rt == "Add");
      int64_t port = optInt(s, "Port", sw, 0, 65535, -1);
      if (port != -1 && port != kPlan9Port)
        fail(HCS_E_INVALIDARG, sw + ".Port: must be " + std::to_string(kPlan9Port));
      optBool(s, "ReadOnly", sw);
    } else {
      checkFields(s, sw + " (MappedDirectory)", {"HostPath", "ContainerPath", "ReadOnly"});
      optString(s, "ContainerPath", sw, true, true);
      optString(s, "HostPath", sw, rt == "Add", rt == "Add");
      optBool(s, "ReadOnly", sw);
    }
  } else if (type == "VPCIDevice") {
    validateVpciGuest(sys, s, sw);
  } else if (type == "CombinedLayers") {
    checkFields(s, sw + " (CombinedLayers)", {"ContainerID", "ContainerRootPath", "Layers", "ScratchPath", "FilterType"});
    optString(s, "ContainerID", sw);
    optString(s, "ContainerRootPath", sw, true, true);
    optString(s, "ScratchPath", sw);
    optString(s, "FilterType", sw);
    const Json *layers = field(s, "Layers");
    if (rt == "Add" && !layers) invalidJson(sw + ": missing required field \"Layers\"");
    if (layers) {
      if (!layers->isArray()) invalidJson(sw + ".Layers: expected an array, got " + typeName(*layers));
      for (size_t i = 0; i < layers->items().size(); ++i) {
        const Json &l = layers->items()[i];
        std::string lw = sw + ".Layers[" + std::to_string(i) + "]";
        requireObject(l, lw);
        checkFields(l, lw, {"Id", "Path"});
        optString(l, "Id", lw);
        optString(l, "Path", lw, true, true);
      }
    }
  } else {
    invalidJson(what + ".ResourceType: unknown or unsupported resource type \"" + type + "\"");
  }
}

const std::string &modifyRequestName() {
  static const std::string *name = new std::string("ModifySettingRequest");  // made once, not per request
  return *name;
}

// The host half of a ModifySettingRequest: its ResourcePath, RequestType and Settings values (as
// field() gives them).
void validateHostShape(const Json *resourcePath, const Json *requestType, const Json *settings, HostTarget &t,
                       std::string &rt) {
  const std::string &path = optStringValue(resourcePath, "ResourcePath", modifyRequestName(), true, true);
  t = parseResourcePath(path);
  rt = optStringValue(requestType, "RequestType", modifyRequestName(), true);
  // Names for error messages, built once (not per request).
  static const std::string sw = "ModifySettingRequest.Settings";
  static const std::string attachmentWhat = sw + " (Attachment)";
  auto needAddRemove = [&](const char *what) {
    if (rt != "Add" && rt != "Remove")
      invalidJson("ModifySettingRequest.RequestType: \"" + rt + "\" is not supported for " + what + " (Add, Remove)");
  };
  auto needSettings = [&]() -> const Json & {
    if (!settings) invalidJson("ModifySettingRequest: missing required field \"Settings\"");
    return *settings;
  };
  switch (t.kind) {
    case HostKind::Scsi:
      needAddRemove("SCSI attachments");
      if (rt == "Add") validateAttachment(needSettings(), attachmentWhat);
      else if (settings) requireObject(*settings, sw);  // ignored on Remove
      break;
    case HostKind::Vsmb:
      if (rt != "Add" && rt != "Update" && rt != "Remove")
        invalidJson("ModifySettingRequest.RequestType: \"" + rt + "\" is not supported for VirtualSmb shares (Add, Update, Remove)");
      validateVsmbShare(needSettings(), sw + " (VirtualSmbShare)", rt != "Remove");
      break;
    case HostKind::VpmemDevice:
      needAddRemove("VirtualPMem devices");
      if (rt == "Add") validateVpmemDevice(needSettings(), sw + " (VirtualPMemDevice)");
      else if (settings) requireObject(*settings, sw);  // ignored on Remove
      break;
    case HostKind::VpmemMapping:
      needAddRemove("VirtualPMem mappings");
      if (rt == "Add") validateVpmemMapping(needSettings(), sw + " (VirtualPMemMapping)");
      else if (settings) requireObject(*settings, sw);  // ignored on Remove
      break;
    case HostKind::Plan9:
      needAddRemove("Plan9 shares");
      validatePlan9Share(needSettings(), sw + " (Plan9Share)", rt == "Add");
      break;
    case HostKind::Vpci:
      needAddRemove("VirtualPci devices");
      if (rt == "Add") validateVpciDevice(needSettings(), sw + " (VirtualPciDevice)");
      else if (settings) requireObject(*settings, sw);  // ignored on Remove
      break;
    case HostKind::Pipe:
      needAddRemove("mapped pipes");
      if (settings && !settings->isString())
        invalidJson(sw + ": expected the host pipe path as a string, got " + typeName(*settings));
      break;
  }
}

// ------------------------------------------------------------------------------------------------
// Model lookups

ScsiController *findController(System &sys, const std::string &guid) {
  for (auto &c : sys.scsi)
    if (c.guid == guid) return &c;
  return nullptr;
}

ScsiController *controllerByIndex(System &sys, int64_t index) {
  if (index >= 0 && index < 4) {
    ScsiController *c = findController(sys, kStandardControllers[index]);
    if (c) return c;
  }
  if (index >= 0 && index < static_cast<int64_t>(sys.scsi.size())) return &sys.scsi[index];
  return nullptr;
}

std::string str(const Json &s, const char *key) {
  const Json *v = field(s, key);
  return v && v->isString() ? v->asString() : std::string();
}

// The string at `key`, or an empty string, without a copy (for scans over a table).
const std::string &strRef(const Json &s, const char *key) {
  static const std::string empty;
  const Json *v = field(s, key);
  return v && v->isString() ? v->asString() : empty;
}

int64_t num(const Json &s, const char *key, int64_t def = 0) {
  const Json *v = field(s, key);
  return v && v->isNumber() ? v->asInt() : def;
}

// The guest path of a mapped virtual disk entry (MountPath or ContainerPath).
const std::string &mvdPath(const Json &s) {
  const std::string &p = strRef(s, "MountPath");
  return p.empty() ? strRef(s, "ContainerPath") : p;
}
const std::string &dirPath(const Json &s) { return mvdPath(s); }

// ------------------------------------------------------------------------------------------------
// Guest tables: every insert and erase goes through addGuest / eraseGuest, which keep the derived
// indexes (System::plan9MountOf, lcowDiskMounts, combinedPaths) in step, so no check scans a table.

enum class GuestTable { Mvd, Vpmem, Dir, Combined };

KeyedList<Json> &tableOf(System &sys, GuestTable t) {
  switch (t) {
    case GuestTable::Mvd: return sys.mappedVirtualDisks;
    case GuestTable::Vpmem: return sys.vpmemGuest;
    case GuestTable::Dir: return sys.mappedDirectories;
    case GuestTable::Combined: break;
  }
  return sys.combinedLayers;
}

// The key of an entry in its table: the guest path, or ContainerRootPath for combined layers.
const std::string &guestKey(GuestTable t, const Json &e) {
  switch (t) {
    case GuestTable::Mvd: return mvdPath(e);
    case GuestTable::Vpmem: return strRef(e, "MountPath");
    case GuestTable::Dir: return dirPath(e);
    case GuestTable::Combined: break;
  }
  return strRef(e, "ContainerRootPath");
}

template <typename K>
void bump(std::map<K, int> &m, const K &key, int delta) {
  auto it = m.emplace(key, 0).first;
  if ((it->second += delta) <= 0) m.erase(it);
}

void indexGuestEntry(System &sys, GuestTable t, const Json &e, int delta) {
  switch (t) {
    case GuestTable::Mvd:
      if (strRef(e, "ContainerPath").empty()) bump(sys.lcowDiskMounts, {num(e, "Controller"), num(e, "Lun")}, delta);
      return;
    case GuestTable::Vpmem: return;
    case GuestTable::Dir: {
      const std::string &share = strRef(e, "ShareName");
      const std::string &mount = strRef(e, "MountPath");
      if (share.empty() || mount.empty()) return;
      auto it = sys.plan9MountOf.find(share);
      if (delta > 0 && it == sys.plan9MountOf.end()) sys.plan9MountOf.emplace(share, mount);
      if (delta < 0 && it != sys.plan9MountOf.end() && it->second == mount) sys.plan9MountOf.erase(it);
      return;
    }
    case GuestTable::Combined: {
      for (const char *k : {"ContainerRootPath", "ScratchPath"})
        if (!strRef(e, k).empty()) bump(sys.combinedPaths, strRef(e, k), delta);
      if (const Json *layers = field(e, "Layers"))
        for (const auto &l : layers->items())
          if (!strRef(l, "Path").empty()) bump(sys.combinedPaths, strRef(l, "Path"), delta);
      return;
    }
  }
}

// Appends an entry; false (nothing changed) when its key is taken.
bool addGuest(System &sys, GuestTable t, const Json &e) {
  if (!tableOf(sys, t).insert(guestKey(t, e), e)) return false;
  indexGuestEntry(sys, t, e, +1);
  return true;
}

// Removes the entry of `key`; false when there is none.
bool eraseGuest(System &sys, GuestTable t, const std::string &key) {
  Json old;
  if (!tableOf(sys, t).erase(key, &old)) return false;
  indexGuestEntry(sys, t, old, -1);
  return true;
}

bool guestPathInUse(const System &sys, const std::string &path) {
  return sys.mappedVirtualDisks.contains(path) || sys.vpmemGuest.contains(path) || sys.mappedDirectories.contains(path);
}

bool isSep(char c) { return c == '/' || c == '\\'; }

// Whether `path` is on a mounted virtual disk (isUnder some disk's guest path): looks up `path`
// itself and each of its ancestors, with and without the trailing separator.
bool onMountedDisk(const System &sys, const std::string &path) {
  if (sys.mappedVirtualDisks.contains(path)) return true;
  for (size_t i = 0; i < path.size(); ++i) {
    if (!isSep(path[i])) continue;
    if (i > 0 && sys.mappedVirtualDisks.contains(path.substr(0, i))) return true;
    if (i + 1 < path.size() && sys.mappedVirtualDisks.contains(path.substr(0, i + 1))) return true;
  }
  return false;
}

// The WCOW disk mounted at ContainerPath `path`, if any.
bool windowsDiskAt(const System &sys, const std::string &path) {
  const Json *e = path.empty() ? nullptr : sys.mappedVirtualDisks.find(path);
  return e && strRef(*e, "ContainerPath") == path;
}

// Whether a combined-layers entry uses a path isUnder `dir` (as layer, root or scratch): the paths
// under `dir` are `dir` itself and one contiguous key range of the sorted index per separator.
bool combinedUses(const System &sys, const std::string &dir) {
  if (dir.empty()) return false;
  const auto &m = sys.combinedPaths;
  if (m.count(dir)) return true;
  auto anyWithPrefix = [&m](const std::string &prefix) {
    auto it = m.lower_bound(prefix);
    return it != m.end() && it->first.compare(0, prefix.size(), prefix) == 0;
  };
  if (isSep(dir.back())) return anyWithPrefix(dir);
  return anyWithPrefix(dir + '/') || anyWithPrefix(dir + '\\');
}

// The first combined-layers entry (in add order) using a path under `path`; a scan, for the
// error message only (combinedUses answers whether there is one).
const Json *combinedUsing(const System &sys, const std::string &path) {
  for (const auto &entry : sys.combinedLayers) {
    const Json &c = entry.second;
    if (isUnder(str(c, "ContainerRootPath"), path) || isUnder(str(c, "ScratchPath"), path)) return &c;
    const Json *layers = field(c, "Layers");
    if (layers)
      for (const auto &l : layers->items())
        if (isUnder(str(l, "Path"), path)) return &c;
  }
  return nullptr;
}

void failIfBusy(const System &sys, const std::string &path, const std::string &what) {
  const Json *c = combinedUses(sys, path) ? combinedUsing(sys, path) : nullptr;
  if (c)
    fail(HCS_E_BUSY_WIN32, what + " \"" + path + "\" is in use by the combined layers at \"" +
                               str(*c, "ContainerRootPath") + "\"");
}

// ------------------------------------------------------------------------------------------------
// Host apply

void applyHostTarget(System &sys, const HostTarget &t, const std::string &rt, const Json *settings) {
  switch (t.kind) {
    case HostKind::Scsi: {
      ScsiController *c = findController(sys, t.guid);
      if (!c) fail(HCS_E_NOT_FOUND, "SCSI controller " + t.guid + " does not exist in this virtual machine");
      if (t.lun >= kMaxLun) fail(HCS_E_INVALIDARG, "SCSI LUN " + std::to_string(t.lun) + " is out of range (0..63)");
      int lun = static_cast<int>(t.lun);
      auto it = c->luns.find(lun);
      if (rt == "Add") {
        if (it != c->luns.end())
          fail(HCS_E_ALREADY_EXISTS_WIN32, "SCSI controller " + t.guid + " LUN " + std::to_string(lun) + " is already attached");
        ScsiAttachment a;
        a.settings = *settings;
        c->luns.emplace(lun, std::move(a));
      } else {
        if (it == c->luns.end())
          return notAttached("SCSI controller " + t.guid + " LUN " + std::to_string(lun) + " has no attachment");
        c->luns.erase(it);
      }
      return;
    }
    case HostKind::Vsmb: {
      if (!sys.hasVsmb) fail(HCS_E_NOT_FOUND, "this virtual machine has no VirtualSmb device");
      std::string name = str(*settings, "Name");
      HostEntry *e = sys.vsmbShares.find(name);
      if (rt == "Add") {
        if (e) fail(HCS_E_ALREADY_EXISTS_WIN32, "VSMB share \"" + name + "\" already exists");
        sys.vsmbShares.insert(name, HostEntry{*settings, false});
      } else if (rt == "Update") {
        if (!e) fail(HCS_E_NOT_FOUND, "VSMB share \"" + name + "\" does not exist");
        const Json *opts = field(e->settings, "Options");
        const Json *restrict = opts ? field(*opts, "RestrictFileAccess") : nullptr;
        if (!restrict || !restrict->isBool() || !restrict->asBool())
          fail(HCS_E_NOT_SUPPORTED_WIN32, "VSMB share \"" + name + "\" is not restricted (RestrictFileAccess): Update is not supported");
        e->settings = *settings;
      } else {
        if (!e) return notAttached("VSMB share \"" + name + "\" does not exist");
        sys.vsmbShares.erase(name);
      }
      return;
    }
    case HostKind::VpmemDevice:
    case HostKind::VpmemMapping: {
      if (!sys.hasVpmem) fail(HCS_E_NOT_FOUND, "this virtual machine has no VirtualPMem device");
      if (t.device >= sys.vpmemMaxCount)
        fail(HCS_E_INVALIDARG, "VirtualPMem device " + std::to_string(t.device) + " is out of range (MaximumCount " +
                                   std::to_string(sys.vpmemMaxCount) + ")");
      std::string dn = "VirtualPMem device " + std::to_string(t.device);
      auto it = sys.vpmem.find(t.device);
      if (t.kind == HostKind::VpmemDevice) {
        if (rt == "Add") {
          if (it != sys.vpmem.end()) fail(HCS_E_ALREADY_EXISTS_WIN32, dn + " already exists");
          VpmemDevice d;
          d.present = true;
          d.settings = *settings;
          sys.vpmem[t.device] = d;
        } else {
          if (it == sys.vpmem.end() || !it->second.present) return notAttached(dn + " does not exist");
          if (!it->second.mappings.empty()) fail(HCS_E_BUSY_WIN32, dn + " still has mappings");
          sys.vpmem.erase(it);
        }
      } else {
        std::string mn = dn + " mapping at offset " + std::to_string(t.offset);
        if (rt == "Add") {
          if (t.offset % 4096 != 0) fail(HCS_E_INVALIDARG, mn + ": offset is not a multiple of 4096");
          if (t.offset >= sys.vpmemMaxSizeBytes)
            fail(HCS_E_INVALIDARG, mn + ": offset is beyond MaximumSizeBytes " + std::to_string(sys.vpmemMaxSizeBytes));
          if (it != sys.vpmem.end() && it->second.mappings.count(static_cast<uint64_t>(t.offset)))
            fail(HCS_E_ALREADY_EXISTS_WIN32, mn + " already exists");
          sys.vpmem[t.device].mappings[static_cast<uint64_t>(t.offset)] = *settings;
        } else {
          if (it == sys.vpmem.end() || !it->second.mappings.count(static_cast<uint64_t>(t.offset)))
            return notAttached(mn + " does not exist");
          it->second.mappings.erase(static_cast<uint64_t>(t.offset));
          if (!it->second.present && it->second.mappings.empty()) sys.vpmem.erase(it);
        }
      }
      return;
    }
    case HostKind::Plan9: {
      if (!sys.hasPlan9) fail(HCS_E_NOT_FOUND, "this virtual machine has no Plan9 device");
      std::string name = str(*settings, "Name");
      HostEntry *e = sys.plan9Shares.find(name);
      if (rt == "Add") {
        if (e) fail(HCS_E_ALREADY_EXISTS_WIN32, "Plan9 share \"" + name + "\" already exists");
        sys.plan9Shares.insert(name, HostEntry{*settings, false});
      } else {
        if (!e) return notAttached("Plan9 share \"" + name + "\" does not exist");
        sys.plan9Shares.erase(name);
      }
      return;
    }
    case HostKind::Vpci:
      applyVpciHost(sys, t.guid, rt == "Add", settings);
      return;
    case HostKind::Pipe: {
      if (rt == "Add") {
        if (!sys.mappedPipes.insert(t.pipe, settings ? *settings : Json()))
          fail(HCS_E_ALREADY_EXISTS_WIN32, "mapped pipe \"" + t.pipe + "\" already exists");
      } else {
        if (!sys.mappedPipes.erase(t.pipe)) return notAttached("mapped pipe \"" + t.pipe + "\" does not exist");
      }
      return;
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Guest apply

bool isWindowsCombined(System &sys, const Json &s) {
  if (sys.os == GuestOs::Windows) return true;
  if (sys.os == GuestOs::Linux) return false;
  return windowsDiskAt(sys, str(s, "ContainerRootPath"));
}

void applyGuestRequest(System &sys, const Json &gr) {
  std::string rt = str(gr, "RequestType");
  std::string type = str(gr, "ResourceType");
  const Json &s = *field(gr, "Settings");
  bool add = rt == "Add";
  if (type == "MappedVirtualDisk" || type == "MappedVirtualDiskForContainerScratch") {
    std::string path = mvdPath(s);
    bool windows = !str(s, "ContainerPath").empty();
    std::string kind = windows ? "ContainerPath" : "MountPath";
    if (add) {
      int64_t ctrl = num(s, "Controller");
      int64_t lun = num(s, "Lun");
      ScsiController *c = controllerByIndex(sys, ctrl);
      if (!c) fail(HCS_E_NOT_FOUND, "guest: SCSI controller " + std::to_string(ctrl) + " does not exist");
      auto it = c->luns.find(static_cast<int>(lun));
      if (lun >= kMaxLun || it == c->luns.end())
        fail(HCS_E_NOT_FOUND, "guest: no disk attached at SCSI controller " + std::to_string(ctrl) + " LUN " + std::to_string(lun));
      if (it->second.unplugged)
        fail(HCS_E_INVALID_STATE, "guest: the disk at SCSI controller " + std::to_string(ctrl) + " LUN " +
                                      std::to_string(lun) + " was unplugged");
      if (guestPathInUse(sys, path)) fail(HCS_E_ALREADY_EXISTS_WIN32, "guest: " + kind + " \"" + path + "\" is already in use");
      addGuest(sys, GuestTable::Mvd, s);
    } else {
      failIfBusy(sys, path, "guest: mapped virtual disk");
      if (!eraseGuest(sys, GuestTable::Mvd, path))
        notAttached("guest: no mapped virtual disk at " + kind + " \"" + path + "\"");
    }
    return;
  }
  if (type == "SCSIDevice") {
    int64_t ctrl = num(s, "Controller");
    int64_t lun = num(s, "Lun");
    ScsiController *c = controllerByIndex(sys, ctrl);
    auto it = c ? c->luns.find(static_cast<int>(lun)) : std::map<int, ScsiAttachment>::iterator();
    if (!c || it == c->luns.end() || it->second.unplugged)
      return notAttached("guest: no SCSI device at controller " + std::to_string(ctrl) + " LUN " + std::to_string(lun));
    if (sys.lcowDiskMounts.count({ctrl, lun}))  // mounted: find the first mount for the message
      for (const auto &entry : sys.mappedVirtualDisks) {
        const Json &e = entry.second;
        if (num(e, "Controller") == ctrl && num(e, "Lun") == lun && str(e, "ContainerPath").empty())
          fail(HCS_E_BUSY_WIN32, "guest: SCSI device at controller " + std::to_string(ctrl) + " LUN " +
                                     std::to_string(lun) + " is still mounted at \"" + mvdPath(e) + "\"");
      }
    it->second.unplugged = true;
    return;
  }
  if (type == "VPMemDevice") {
    std::string path = str(s, "MountPath");
    if (add) {
      int64_t dev = num(s, "DeviceNumber");
      auto it = sys.vpmem.find(dev);
      const Json *mi = field(s, "MappingInfo");
      if (mi) {
        int64_t off = num(*mi, "DeviceOffsetInBytes");
        if (it == sys.vpmem.end() || !it->second.mappings.count(static_cast<uint64_t>(off)))
          fail(HCS_E_NOT_FOUND, "guest: no VirtualPMem mapping at device " + std::to_string(dev) + " offset " + std::to_string(off));
      } else if (it == sys.vpmem.end() || !it->second.present) {
        fail(HCS_E_NOT_FOUND, "guest: VirtualPMem device " + std::to_string(dev) + " does not exist");
      }
      if (guestPathInUse(sys, path)) fail(HCS_E_ALREADY_EXISTS_WIN32, "guest: MountPath \"" + path + "\" is already in use");
      addGuest(sys, GuestTable::Vpmem, s);
    } else {
      failIfBusy(sys, path, "guest: VPMem device");
      if (!eraseGuest(sys, GuestTable::Vpmem, path))
        notAttached("guest: no VPMem device mounted at \"" + path + "\"");
    }
    return;
  }
  if (type == "MappedDirectory") {
    std::string path = dirPath(s);
    bool windows = str(s, "MountPath").empty();
    std::string kind = windows ? "ContainerPath" : "MountPath";
    if (add) {
      if (!windows) {
        std::string share = str(s, "ShareName");
        if (!sys.plan9Shares.contains(share)) fail(HCS_E_NOT_FOUND, "guest: Plan9 share \"" + share + "\" does not exist");
        auto mounted = sys.plan9MountOf.find(share);
        if (mounted != sys.plan9MountOf.end())
          fail(HCS_E_ALREADY_EXISTS_WIN32, "guest: Plan9 share \"" + share + "\" is already mounted at \"" + mounted->second + "\"");
      }
      if (guestPathInUse(sys, path)) fail(HCS_E_ALREADY_EXISTS_WIN32, "guest: " + kind + " \"" + path + "\" is already in use");
      addGuest(sys, GuestTable::Dir, s);
    } else {
      failIfBusy(sys, path, "guest: mapped directory");
      if (!eraseGuest(sys, GuestTable::Dir, path))
        notAttached("guest: no mapped directory at " + kind + " \"" + path + "\"");
    }
    return;
  }
  if (type == "VPCIDevice") {
    applyVpciGuest(sys, add, s);
    return;
  }
  if (type == "CombinedLayers") {
    std::string root = str(s, "ContainerRootPath");
    if (!add) {
      if (!eraseGuest(sys, GuestTable::Combined, root))
        notAttached("guest: no combined layers at ContainerRootPath \"" + root + "\"");
      return;
    }
    if (sys.combinedLayers.contains(root))
      fail(HCS_E_ALREADY_EXISTS_WIN32, "guest: combined layers already exist at ContainerRootPath \"" + root + "\"");
    const Json *layers = field(s, "Layers");
    if (isWindowsCombined(sys, s)) {
      if (!windowsDiskAt(sys, root)) fail(HCS_E_NOT_FOUND, "guest: ContainerRootPath \"" + root + "\" is not a mounted virtual disk");
      for (const auto &l : layers->items()) {
        std::string p = str(l, "Path");
        const size_t prefix = std::char_traits<char>::length(kVsmbGuestPrefix);
        bool ok = sys.mappedVirtualDisks.contains(p) ||
                  (p.compare(0, prefix, kVsmbGuestPrefix) == 0 && sys.vsmbShares.contains(p.substr(prefix)));
        if (!ok) fail(HCS_E_NOT_FOUND, "guest: layer path \"" + p + "\" is neither a VSMB share nor a mounted disk");
      }
    } else {
      for (const auto &l : layers->items()) {
        std::string p = str(l, "Path");
        if (!guestPathInUse(sys, p)) fail(HCS_E_NOT_FOUND, "guest: layer path \"" + p + "\" is not a current guest mount");
      }
      std::string scratch = str(s, "ScratchPath");
      if (!scratch.empty()) {
        if (!onMountedDisk(sys, scratch)) fail(HCS_E_NOT_FOUND, "guest: ScratchPath \"" + scratch + "\" is not on a mounted virtual disk");
      }
    }
    addGuest(sys, GuestTable::Combined, s);
    return;
  }
  invalidJson("GuestRequest.ResourceType: unknown resource type \"" + type + "\"");
}

}  // namespace

bool hasGuestPart(const Json &doc) { return field(doc, "GuestRequest") != nullptr; }

void applyGuestOnly(System &sys, const Json &guestRequest) {
  validateGuestShape(sys, guestRequest);
  applyGuestRequest(sys, guestRequest);
}

void checkModifyShape(const Json &doc, ModifyShape &out) {
  requireObject(doc, modifyRequestName());
  enum { kResourcePath, kRequestType, kSettings, kGuestRequest };
  static constexpr std::string_view kNames[] = {"ResourcePath", "RequestType", "Settings", "GuestRequest"};
  const Json *f[4];
  knownFields(doc, modifyRequestName(), kNames, f);
  out.host = f[kResourcePath] != nullptr;
  out.guestRequest = f[kGuestRequest];
  if (!out.host && !out.guestRequest) invalidJson("ModifySettingRequest: neither ResourcePath nor GuestRequest is present");
  if (out.host) {
    validateHostShape(f[kResourcePath], f[kRequestType], f[kSettings], out.target, out.requestType);
    out.settings = f[kSettings];
  } else {
    if (f[kRequestType] || f[kSettings]) invalidJson("ModifySettingRequest: RequestType/Settings without ResourcePath");
  }
}

void applyModifyShape(System &sys, const ModifyShape &shape, const HcsFailure *guestFault) {
  const Json *gr = shape.guestRequest;
  if (gr) validateGuestShape(sys, *gr);
  if (shape.host) applyHostTarget(sys, shape.target, shape.requestType, shape.settings);
  if (gr) {
    if (guestFault) throw *guestFault;
    applyGuestRequest(sys, *gr);
  }
}

namespace {
// Chipset boot configuration (schema 2.1 + later fields; no per-version check, as HCS accepts a 2.1
// document using 2.2+ fields). Returns true when it boots a Linux kernel directly.
bool validateChipset(const Json &c, const std::string &what) {
  requireObject(c, what);
  bool linux = false;
  if (const Json *k = field(c, "LinuxKernelDirect")) {
    std::string kw = what + ".LinuxKernelDirect";
    requireObject(*k, kw);
    checkFields(*k, kw, {"KernelFilePath", "InitRdPath", "KernelCmdLine"});
    optString(*k, "KernelFilePath", kw, true, true);
    optString(*k, "InitRdPath", kw);
    optString(*k, "KernelCmdLine", kw);
    linux = true;
  }
  if (const Json *u = field(c, "Uefi")) {
    std::string uw = what + ".Uefi";
    requireObject(*u, uw);
    checkFields(*u, uw, {"EnableDebugger", "SecureBootTemplateId", "ApplySecureBootTemplate", "BootThis", "Console", "StopOnBootFailure"});
    if (const Json *b = field(*u, "BootThis")) {
      std::string bw = uw + ".BootThis";
      requireObject(*b, bw);
      checkFields(*b, bw, {"DevicePath", "DeviceType", "DiskNumber", "OptionalData", "VmbFsRootPath"});
      std::string type = optString(*b, "DeviceType", bw, true);
      if (type != "ScsiDrive" && type != "VmbFs" && type != "Network" && type != "File")
        invalidJson(bw + ".DeviceType: unknown boot device type \"" + type + "\"");
      std::string path = optString(*b, "DevicePath", bw);
      if ((type == "VmbFs" || type == "File") && path.empty()) invalidJson(bw + ": a " + type + " boot needs DevicePath");
      optString(*b, "OptionalData", bw);
      optString(*b, "VmbFsRootPath", bw);
      optInt(*b, "DiskNumber", bw, 0, 4294967295.0, 0);
    }
    if (linux) invalidJson(what + ": LinuxKernelDirect and Uefi are mutually exclusive");
  }
  return linux;
}

void validateTopology(const Json &t, const std::string &what) {
  requireObject(t, what);
  if (const Json *m = field(t, "Memory")) {
    requireObject(*m, what + ".Memory");
    optInt(*m, "SizeInMB", what + ".Memory", 1, 9007199254740991.0, 0, true);
    optBool(*m, "AllowOvercommit", what + ".Memory");
    optBool(*m, "EnableDeferredCommit", what + ".Memory");
    if (optBool(*m, "EnableDeferredCommit", what + ".Memory") && !optBool(*m, "AllowOvercommit", what + ".Memory"))
      fail(HCS_E_INVALIDARG, what + ".Memory: EnableDeferredCommit needs AllowOvercommit");
  }
  if (const Json *p = field(t, "Processor")) {
    requireObject(*p, what + ".Processor");
    optInt(*p, "Count", what + ".Processor", 1, 2048, 1, true);
  }
}
}  // namespace

void buildSystemFromCreateDoc(const std::string &id, const Json &doc, System &out) {
  const std::string w = "ComputeSystem";
  requireObject(doc, w);
  const Json *sv = field(doc, "SchemaVersion");
  if (!sv) invalidJson(w + ": missing required field \"SchemaVersion\"");
  requireObject(*sv, w + ".SchemaVersion");
  checkFields(*sv, w + ".SchemaVersion", {"Major", "Minor"});
  optInt(*sv, "Major", w + ".SchemaVersion", 0, 65535, 0, true);
  optInt(*sv, "Minor", w + ".SchemaVersion", 0, 65535, 0, true);
  System sys;
  sys.id = id;
  sys.state = "Created";
  sys.runtimeId = randomUuid();
  if (field(doc, "Owner")) {
    sys.owner = optString(doc, "Owner", w);
    sys.hasOwner = true;
  }
  const Json *vm = field(doc, "VirtualMachine");
  if (!vm) invalidJson(w + ": missing required field \"VirtualMachine\"");
  requireObject(*vm, w + ".VirtualMachine");
  const Json *devices = field(*vm, "Devices");
  // Stricter than HCS (deviation, docs/hcs.md): every VM document Microsoft documents has a
  // Chipset, and without one nothing can boot, so the simulator refuses a VM document without it.
  const Json *chipset = field(*vm, "Chipset");
  if (!chipset)
    invalidJson(w + ".VirtualMachine: missing required field \"Chipset\" (the simulator requires a boot configuration; "
                    "use {\"Uefi\":{}} for firmware only)");
  bool linuxHint = validateChipset(*chipset, w + ".VirtualMachine.Chipset");
  if (const Json *gc = field(*vm, "GuestConnection")) {
    // Schema 2.1 UseVsock / UseConnectedSuspend, 2.4 UseHostTimeZone: HCS owns the guest connection.
    const std::string gw = w + ".VirtualMachine.GuestConnection";
    requireObject(*gc, gw);
    checkFields(*gc, gw, {"UseVsock", "UseConnectedSuspend", "UseHostTimeZone"});
    optBool(*gc, "UseVsock", gw);
    optBool(*gc, "UseConnectedSuspend", gw);
    optBool(*gc, "UseHostTimeZone", gw);
    sys.guestConnection = true;
  }
  if (const Json *topology = field(*vm, "ComputeTopology")) validateTopology(*topology, w + ".VirtualMachine.ComputeTopology");
  if (devices) {
    const std::string dw = w + ".VirtualMachine.Devices";
    requireObject(*devices, dw);
    if (const Json *scsi = field(*devices, "Scsi")) {
      requireObject(*scsi, dw + ".Scsi");
      for (const auto &m : scsi->members()) {
        std::string cw = dw + ".Scsi[\"" + m.first + "\"]";
        std::string guid = canonicalGuid(m.first);
        if (guid.empty()) invalidJson(cw + ": the key is not a GUID");
        if (findController(sys, guid)) invalidJson(cw + ": duplicate controller");
        requireObject(m.second, cw);
        checkFields(m.second, cw, {"Attachments"});
        ScsiController c;
        c.guid = guid;
        if (const Json *att = field(m.second, "Attachments")) {
          requireObject(*att, cw + ".Attachments");
          for (const auto &a : att->members()) {
            std::string aw = cw + ".Attachments[\"" + a.first + "\"]";
            int64_t lun;
            if (!parseDecimal(a.first, lun)) invalidJson(aw + ": the key is not a decimal LUN");
            if (lun >= kMaxLun) fail(HCS_E_INVALIDARG, aw + ": LUN out of range (0..63)");
            validateAttachment(a.second, aw);
            ScsiAttachment sa;
            sa.settings = a.second;
            sa.boot = true;
            c.luns[static_cast<int>(lun)] = sa;
          }
        }
        sys.scsi.push_back(c);
      }
    }
    if (const Json *pm = field(*devices, "VirtualPMem")) {
      std::string pw = dw + ".VirtualPMem";
      requireObject(*pm, pw);
      checkFields(*pm, pw, {"MaximumCount", "MaximumSizeBytes", "Devices"});
      sys.hasVpmem = true;
      sys.vpmemMaxCount = optInt(*pm, "MaximumCount", pw, 0, 4294967295.0, 0, true);
      if (sys.vpmemMaxCount > kMaxVpmemCount)
        fail(HCS_E_INVALIDARG, pw + ".MaximumCount: " + std::to_string(sys.vpmemMaxCount) + " exceeds 128");
      sys.vpmemMaxSizeBytes = optInt(*pm, "MaximumSizeBytes", pw, 1, 9007199254740991.0, 4294967296LL);
      if (sys.vpmemMaxSizeBytes % 4096 != 0)
        fail(HCS_E_INVALIDARG, pw + ".MaximumSizeBytes: " + std::to_string(sys.vpmemMaxSizeBytes) + " is not a multiple of 4096");
      if (const Json *devs = field(*pm, "Devices")) {
        requireObject(*devs, pw + ".Devices");
        for (const auto &d : devs->members()) {
          std::string ddw = pw + ".Devices[\"" + d.first + "\"]";
          int64_t n;
          if (!parseDecimal(d.first, n)) invalidJson(ddw + ": the key is not a decimal device number");
          if (n >= sys.vpmemMaxCount) fail(HCS_E_INVALIDARG, ddw + ": device number is not below MaximumCount");
          validateVpmemDevice(d.second, ddw);
          VpmemDevice dev;
          dev.present = true;
          dev.boot = true;
          dev.settings = d.second;
          sys.vpmem[n] = dev;
        }
      }
    }
    if (const Json *vsmb = field(*devices, "VirtualSmb")) {
      std::string vw = dw + ".VirtualSmb";
      requireObject(*vsmb, vw);
      checkFields(*vsmb, vw, {"Shares", "DirectFileMappingInMB"});
      sys.hasVsmb = true;
      optInt(*vsmb, "DirectFileMappingInMB", vw, 0, 9007199254740991.0, 0);
      if (const Json *shares = field(*vsmb, "Shares")) {
        if (!shares->isArray()) invalidJson(vw + ".Shares: expected an array, got " + typeName(*shares));
        for (size_t i = 0; i < shares->items().size(); ++i) {
          const Json &s = shares->items()[i];
          validateVsmbShare(s, vw + ".Shares[" + std::to_string(i) + "]", true);
          if (!sys.vsmbShares.insert(str(s, "Name"), HostEntry{s, true}))
            invalidJson(vw + ".Shares: duplicate share name \"" + str(s, "Name") + "\"");
        }
      }
    }
    if (const Json *p9 = field(*devices, "Plan9")) {
      std::string pw = dw + ".Plan9";
      requireObject(*p9, pw);
      checkFields(*p9, pw, {"Shares"});
      sys.hasPlan9 = true;
      if (const Json *shares = field(*p9, "Shares")) {
        if (!shares->isArray()) invalidJson(pw + ".Shares: expected an array, got " + typeName(*shares));
        for (size_t i = 0; i < shares->items().size(); ++i) {
          const Json &s = shares->items()[i];
          validatePlan9Share(s, pw + ".Shares[" + std::to_string(i) + "]", true);
          if (!sys.plan9Shares.insert(str(s, "Name"), HostEntry{s, true}))
            invalidJson(pw + ".Shares: duplicate share name \"" + str(s, "Name") + "\"");
        }
      }
    }
  }
  if (devices) {
    if (const Json *vp = field(*devices, "VirtualPci")) vpciFromCreateDoc(sys, *vp, w + ".VirtualMachine.Devices.VirtualPci");
  }
  if (sys.hasVpmem || sys.hasPlan9 || linuxHint) sys.os = GuestOs::Linux;
  else if (sys.hasVsmb) sys.os = GuestOs::Windows;
  out = std::move(sys);
}

int64_t hotAddedCount(const System &sys) {
  int64_t n = 0;
  for (const auto &c : sys.scsi)
    for (const auto &a : c.luns)
      if (!a.second.boot) ++n;
  for (const auto &d : sys.vpmem) {
    if (d.second.present && !d.second.boot) ++n;
    n += static_cast<int64_t>(d.second.mappings.size());
  }
  for (const auto &s : sys.vsmbShares)
    if (!s.second.boot) ++n;
  for (const auto &s : sys.plan9Shares)
    if (!s.second.boot) ++n;
  n += static_cast<int64_t>(sys.mappedPipes.size() + sys.mappedVirtualDisks.size() + sys.vpmemGuest.size() +
                            sys.mappedDirectories.size() + sys.combinedLayers.size());
  return n + vpciHotAddedCount(sys);
}

namespace {
Json arrayOf(const KeyedList<Json> &v) {
  Json a = Json::array();
  for (const auto &e : v) a.push(e.second);
  return a;
}
Json entriesOf(const KeyedList<HostEntry> &v) {
  Json a = Json::array();
  for (const auto &e : v) a.push(e.second.settings);
  return a;
}
const char *osName(GuestOs os) {
  return os == GuestOs::Linux ? "Linux" : os == GuestOs::Windows ? "Windows" : "Unknown";
}
}  // namespace

Json simulatorStateDevicesAndGuest(const System &sys) {
  Json devices = Json::object();
  Json scsi = Json::object();
  for (const auto &c : sys.scsi) {
    Json att = Json::object();
    for (const auto &a : c.luns) att.set(std::to_string(a.first), a.second.settings);
    Json ctrl = Json::object();
    ctrl.set("Attachments", att);
    scsi.set(c.guid, ctrl);
  }
  devices.set("Scsi", scsi);
  Json vsmb = Json::object();
  vsmb.set("Shares", entriesOf(sys.vsmbShares));
  devices.set("VirtualSmb", vsmb);
  Json pmemDevices = Json::object();
  for (const auto &d : sys.vpmem) {
    Json dev = d.second.present && d.second.settings.isObject() ? d.second.settings : Json::object();
    Json maps = Json::object();
    for (const auto &m : d.second.mappings) maps.set(std::to_string(m.first), m.second);
    dev.set("Mappings", maps);
    pmemDevices.set(std::to_string(d.first), dev);
  }
  Json pmem = Json::object();
  pmem.set("Devices", pmemDevices);
  devices.set("VirtualPMem", pmem);
  Json p9 = Json::object();
  p9.set("Shares", entriesOf(sys.plan9Shares));
  devices.set("Plan9", p9);
  Json pipes = Json::array();
  for (const auto &p : sys.mappedPipes) {
    Json e = Json::object();
    e.set("Name", Json::string(p.first));
    if (p.second.isString()) e.set("HostPath", p.second);
    pipes.push(e);
  }
  devices.set("MappedPipes", pipes);
  devices.set("VirtualPci", vpciState(sys));
  Json guest = Json::object();
  guest.set("MappedVirtualDisks", arrayOf(sys.mappedVirtualDisks));
  guest.set("VPMemDevices", arrayOf(sys.vpmemGuest));
  guest.set("MappedDirectories", arrayOf(sys.mappedDirectories));
  guest.set("CombinedLayers", arrayOf(sys.combinedLayers));
  Json out = Json::object();
  out.set("Devices", devices);
  out.set("Guest", guest);
  return out;
}

Json systemToPersist(const System &sys) {
  Json j = Json::object();
  j.set("Id", Json::string(sys.id));
  j.set("State", Json::string(sys.state));
  if (sys.hasOwner) j.set("Owner", Json::string(sys.owner));
  j.set("GuestOs", Json::string(osName(sys.os)));
  j.set("RuntimeId", Json::string(sys.runtimeId));
  j.set("GuestConnection", Json::boolean(sys.guestConnection));
  Json scsi = Json::array();
  for (const auto &c : sys.scsi) {
    Json cj = Json::object();
    cj.set("Guid", Json::string(c.guid));
    Json atts = Json::array();
    for (const auto &a : c.luns) {
      Json aj = Json::object();
      aj.set("Lun", Json::number(a.first));
      aj.set("Settings", a.second.settings);
      aj.set("Boot", Json::boolean(a.second.boot));
      aj.set("Unplugged", Json::boolean(a.second.unplugged));
      atts.push(aj);
    }
    cj.set("Attachments", atts);
    scsi.push(cj);
  }
  j.set("Scsi", scsi);
  if (sys.hasVpmem) {
    Json pm = Json::object();
    pm.set("MaximumCount", Json::number(static_cast<double>(sys.vpmemMaxCount)));
    pm.set("MaximumSizeBytes", Json::number(static_cast<double>(sys.vpmemMaxSizeBytes)));
    Json devs = Json::array();
    for (const auto &d : sys.vpmem) {
      Json dj = Json::object();
      dj.set("Number", Json::number(static_cast<double>(d.first)));
      dj.set("Present", Json::boolean(d.second.present));
      dj.set("Boot", Json::boolean(d.second.boot));
      dj.set("Settings", d.second.settings);
      Json maps = Json::array();
      for (const auto &m : d.second.mappings) {
        Json mj = Json::object();
        mj.set("Offset", Json::number(static_cast<double>(m.first)));
        mj.set("Settings", m.second);
        maps.push(mj);
      }
      dj.set("Mappings", maps);
      devs.push(dj);
    }
    pm.set("Devices", devs);
    j.set("VirtualPMem", pm);
  }
  auto entries = [](const KeyedList<HostEntry> &v) {
    Json a = Json::array();
    for (const auto &e : v) {
      Json ej = Json::object();
      ej.set("Settings", e.second.settings);
      ej.set("Boot", Json::boolean(e.second.boot));
      a.push(ej);
    }
    return a;
  };
  if (sys.hasVsmb) j.set("VirtualSmb", entries(sys.vsmbShares));
  if (sys.hasPlan9) j.set("Plan9", entries(sys.plan9Shares));
  Json pipes = Json::array();
  for (const auto &p : sys.mappedPipes) {
    Json pj = Json::object();
    pj.set("Name", Json::string(p.first));
    pj.set("Settings", p.second);
    pipes.push(pj);
  }
  j.set("MappedPipes", pipes);
  j.set("VirtualPci", vpciToPersist(sys));
  Json state = simulatorStateDevicesAndGuest(sys);
  j.set("Guest", *state.get("Guest"));
  return j;
}

bool systemFromPersist(const Json &j, System &out, std::string &error) {
  try {
    System sys;
    if (!j.isObject()) throw HcsFailure{0, "system entry is not an object"};
    auto s = [&](const Json &o, const char *k) -> std::string {
      const Json *v = o.get(k);
      if (!v || !v->isString()) throw HcsFailure{0, std::string("missing string ") + k};
      return v->asString();
    };
    auto arr = [&](const Json &o, const char *k) -> const std::vector<Json> & {
      const Json *v = o.get(k);
      if (!v || !v->isArray()) throw HcsFailure{0, std::string("missing array ") + k};
      return v->items();
    };
    auto n = [&](const Json &o, const char *k) -> int64_t {
      const Json *v = o.get(k);
      if (!v || !v->isNumber()) throw HcsFailure{0, std::string("missing number ") + k};
      return v->asInt();
    };
    auto b = [&](const Json &o, const char *k) -> bool {
      const Json *v = o.get(k);
      return v && v->isBool() && v->asBool();
    };
    auto val = [&](const Json &o, const char *k) -> Json {
      const Json *v = o.get(k);
      return v ? *v : Json();
    };
    sys.id = s(j, "Id");
    sys.state = s(j, "State");
    if (j.get("Owner")) {
      sys.owner = s(j, "Owner");
      sys.hasOwner = true;
    }
    std::string os = s(j, "GuestOs");
    sys.os = os == "Linux" ? GuestOs::Linux : os == "Windows" ? GuestOs::Windows : GuestOs::Unknown;
    // State files written before RuntimeId existed: a fresh one.
    sys.runtimeId = j.get("RuntimeId") ? s(j, "RuntimeId") : randomUuid();
    sys.guestConnection = b(j, "GuestConnection");
    for (const auto &cj : arr(j, "Scsi")) {
      ScsiController c;
      c.guid = s(cj, "Guid");
      for (const auto &aj : arr(cj, "Attachments")) {
        ScsiAttachment a;
        a.settings = val(aj, "Settings");
        a.boot = b(aj, "Boot");
        a.unplugged = b(aj, "Unplugged");
        c.luns[static_cast<int>(n(aj, "Lun"))] = a;
      }
      sys.scsi.push_back(c);
    }
    if (const Json *pm = j.get("VirtualPMem")) {
      sys.hasVpmem = true;
      sys.vpmemMaxCount = n(*pm, "MaximumCount");
      sys.vpmemMaxSizeBytes = n(*pm, "MaximumSizeBytes");
      for (const auto &dj : arr(*pm, "Devices")) {
        VpmemDevice d;
        d.present = b(dj, "Present");
        d.boot = b(dj, "Boot");
        d.settings = val(dj, "Settings");
        for (const auto &mj : arr(dj, "Mappings")) d.mappings[static_cast<uint64_t>(n(mj, "Offset"))] = val(mj, "Settings");
        sys.vpmem[n(dj, "Number")] = d;
      }
    }
    auto entries = [&](const char *k, bool &has, KeyedList<HostEntry> &v) {
      if (!j.get(k)) return;
      has = true;
      for (const auto &ej : arr(j, k)) {
        Json settings = val(ej, "Settings");
        std::string name = str(settings, "Name");
        if (!v.insert(name, HostEntry{settings, b(ej, "Boot")})) throw HcsFailure{0, std::string("duplicate ") + k + " share " + name};
      }
    };
    entries("VirtualSmb", sys.hasVsmb, sys.vsmbShares);
    entries("Plan9", sys.hasPlan9, sys.plan9Shares);
    for (const auto &pj : arr(j, "MappedPipes"))
      if (!sys.mappedPipes.insert(s(pj, "Name"), val(pj, "Settings"))) throw HcsFailure{0, "duplicate mapped pipe " + s(pj, "Name")};
    vpciFromPersist(j.get("VirtualPci"), sys);
    const Json *g = j.get("Guest");
    if (!g || !g->isObject()) throw HcsFailure{0, "missing Guest"};
    auto guestTable = [&](const char *k, GuestTable t) {
      for (const auto &e : arr(*g, k))
        if (!addGuest(sys, t, e)) throw HcsFailure{0, std::string("duplicate ") + k + " entry " + guestKey(t, e)};
    };
    guestTable("MappedVirtualDisks", GuestTable::Mvd);
    guestTable("VPMemDevices", GuestTable::Vpmem);
    guestTable("MappedDirectories", GuestTable::Dir);
    guestTable("CombinedLayers", GuestTable::Combined);
    out = std::move(sys);
    return true;
  } catch (const HcsFailure &f) {
    error = f.message;
    return false;
  }
}

}  // namespace hcssim
