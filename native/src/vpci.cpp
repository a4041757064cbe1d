// VirtualPci (assigned devices) model; see vpci.h.
#include "vpci.h"

#include <cctype>

#include "core.h"
#include "model.h"
#include "uuid.h"

namespace hcssim {

namespace {

const Json *member(const Json &o, const char *key) {
  const Json *v = o.get(key);
  return v && !v->isNull() ? v : nullptr;
}

void expectObject(const Json &j, const std::string &what) {
  if (!j.isObject()) invalidJson(what + ": expected an object");
}

void onlyFields(const Json &o, const std::string &what, std::initializer_list<const char *> allowed) {
  for (const auto &m : o.members()) {
    bool ok = false;
    for (const char *a : allowed) ok = ok || m.first == a;
    if (!ok) invalidJson(what + ": unknown field \"" + m.first + "\"");
  }
}

std::string upper(std::string s) {
  for (auto &c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

bool hexDigits(const std::string &s, size_t at, size_t n) {
  if (at + n > s.size()) return false;
  for (size_t i = at; i < at + n; ++i)
    if (!std::isxdigit(static_cast<unsigned char>(s[i]))) return false;
  return true;
}

// The simulated host's PCI inventory: every `PCI[P]\VEN_xxxx&DEV_xxxx…\<instance>` path exists
// (one backslash between the hardware id and the instance id, no forward slash).
bool deviceExists(const std::string &path) {
  std::string u = upper(path);
  size_t at = u.rfind("PCIP\\", 0) == 0 ? 5 : u.rfind("PCI\\", 0) == 0 ? 4 : std::string::npos;
  if (at == std::string::npos) return false;
  if (u.compare(at, 4, "VEN_") != 0 || !hexDigits(u, at + 4, 4) || u.compare(at + 8, 5, "&DEV_") != 0 || !hexDigits(u, at + 13, 4))
    return false;
  size_t sep = u.find('\\', at);
  if (sep == std::string::npos || sep + 1 >= u.size() || u.find('\\', sep + 1) != std::string::npos) return false;
  return u.find('/') == std::string::npos;
}

struct FunctionKey {
  std::string path;  // upper case: instance paths are case-insensitive
  int64_t vf;
  bool operator==(const FunctionKey &o) const { return path == o.path && vf == o.vf; }
};

std::vector<FunctionKey> functionsOf(const Json &settings) {
  std::vector<FunctionKey> out;
  const Json *fns = member(settings, "Functions");
  if (!fns) return out;
  for (const auto &f : fns->items()) {
    const Json *p = member(f, "DeviceInstancePath");
    const Json *vf = member(f, "VirtualFunction");
    out.push_back({p ? upper(p->asString()) : std::string(), vf ? vf->asInt() : 0});
  }
  return out;
}

// Which compute system (if any) already holds `key`; `self` is skipped.
std::string holderOf(const FunctionKey &key, const System &self) {
  auto holds = [&](const System &s) {
    for (const auto &d : s.vpci)
      for (const auto &k : functionsOf(d.second.settings))
        if (k == key) return true;
    return false;
  };
  if (holds(self)) return self.id;
  for (const auto &r : core().registry)
    if (&r.second->sys != &self && r.second->status == SystemRec::Status::Live && r.second->sys.state != "Stopped" && holds(r.second->sys))
      return r.second->sys.id;
  return std::string();
}

void checkAssignable(const System &sys, const Json &settings, const std::string &what) {
  for (const auto &k : functionsOf(settings)) {
    std::string fn = "device " + k.path + " function " + std::to_string(k.vf);
    if (!deviceExists(k.path)) fail(HCS_E_NOT_FOUND, what + ": " + fn + ": no such device on the host");
    std::string holder = holderOf(k, sys);
    if (!holder.empty()) fail(HCS_E_BUSY_WIN32, what + ": " + fn + " is already assigned to " + holder);
  }
}

}  // namespace

void validateVpciDevice(const Json &s, const std::string &what) {
  expectObject(s, what);
  onlyFields(s, what, {"Functions", "PropagateNumaAffinity"});
  const Json *fns = member(s, "Functions");
  if (!fns) invalidJson(what + ": missing required field \"Functions\"");
  if (!fns->isArray()) invalidJson(what + ".Functions: expected an array");
  if (fns->items().empty()) invalidJson(what + ".Functions: must not be empty");
  for (size_t i = 0; i < fns->items().size(); ++i) {
    const Json &f = fns->items()[i];
    std::string fw = what + ".Functions[" + std::to_string(i) + "]";
    expectObject(f, fw);
    onlyFields(f, fw, {"DeviceInstancePath", "VirtualFunction", "AllowDirectTranslatedP2P"});
    const Json *p = member(f, "DeviceInstancePath");
    if (!p || !p->isString() || p->asString().empty()) invalidJson(fw + ".DeviceInstancePath: expected a non-empty string");
    const Json *vf = member(f, "VirtualFunction");
    if (vf && !vf->isInteger(0, 65535)) invalidJson(fw + ".VirtualFunction: expected an integer in [0, 65535]");
    const Json *p2p = member(f, "AllowDirectTranslatedP2P");
    if (p2p && !p2p->isBool()) invalidJson(fw + ".AllowDirectTranslatedP2P: expected a boolean");
  }
  const Json *numa = member(s, "PropagateNumaAffinity");
  if (numa && !numa->isBool()) invalidJson(what + ".PropagateNumaAffinity: expected a boolean");
}

void validateVpciGuest(const System &sys, const Json &s, const std::string &what) {
  if (sys.os == GuestOs::Windows) invalidJson("GuestRequest.ResourceType: VPCIDevice is not a WCOW guest resource");
  onlyFields(s, what + " (LCOWMappedVPCIDevice)", {"VMBusGUID"});
  const Json *g = member(s, "VMBusGUID");
  if (!g || !g->isString() || g->asString().empty()) invalidJson(what + ".VMBusGUID: expected a non-empty string");
}

void applyVpciHost(System &sys, const std::string &guid, bool add, const Json *settings) {
  std::string dn = "VirtualPci device " + guid;
  auto it = sys.vpci.find(guid);
  if (!add) {
    if (it == sys.vpci.end()) fail(HCS_E_NOT_FOUND, dn + " does not exist");
    sys.vpci.erase(it);
    return;
  }
  if (it != sys.vpci.end()) fail(HCS_E_ALREADY_EXISTS_WIN32, dn + " already exists");
  checkAssignable(sys, *settings, dn);
  VpciDevice d;
  d.settings = *settings;
  sys.vpci[guid] = d;
}

void applyVpciGuest(System &sys, bool add, const Json &s) {
  // The Linux GCS handles only Add for VPCIDevice ("invalid request type"): removal is host-only.
  if (!add) fail(HCS_E_NOT_SUPPORTED_WIN32, "guest: VPCIDevice supports only Add (the device leaves with its host Remove)");
  std::string guid = canonicalGuid(member(s, "VMBusGUID")->asString());
  auto it = guid.empty() ? sys.vpci.end() : sys.vpci.find(guid);
  if (it == sys.vpci.end()) fail(HCS_E_NOT_FOUND, "guest: no VirtualPci device on VMBus " + member(s, "VMBusGUID")->asString());
  if (it->second.guestAdded) fail(HCS_E_ALREADY_EXISTS_WIN32, "guest: VPCI device " + guid + " was already added");
  it->second.guestAdded = true;
}

void vpciFromCreateDoc(System &sys, const Json &section, const std::string &what) {
  expectObject(section, what);
  for (const auto &m : section.members()) {
    std::string dw = what + "[\"" + m.first + "\"]";
    std::string guid = canonicalGuid(m.first);
    if (guid.empty()) invalidJson(dw + ": the key is not a GUID");
    if (sys.vpci.count(guid)) invalidJson(dw + ": duplicate device");
    validateVpciDevice(m.second, dw);
    checkAssignable(sys, m.second, dw);
    VpciDevice d;
    d.settings = m.second;
    d.boot = true;
    sys.vpci[guid] = d;
  }
}

int64_t vpciHotAddedCount(const System &sys) {
  int64_t n = 0;
  for (const auto &d : sys.vpci) n += (d.second.boot ? 0 : 1) + (d.second.guestAdded ? 1 : 0);
  return n;
}

Json vpciState(const System &sys) {
  Json out = Json::object();
  for (const auto &d : sys.vpci) {
    Json e = Json::object();
    e.set("Settings", d.second.settings);
    e.set("Guest", Json::boolean(d.second.guestAdded));
    out.set(d.first, e);
  }
  return out;
}

Json vpciToPersist(const System &sys) {
  Json out = vpciState(sys);
  for (auto &m : out.members()) {
    const VpciDevice &d = sys.vpci.at(m.first);
    m.second.set("Boot", Json::boolean(d.boot));
  }
  return out;
}

void vpciFromPersist(const Json *section, System &sys) {
  if (!section || !section->isObject()) return;
  for (const auto &m : section->members()) {
    VpciDevice d;
    if (const Json *s = m.second.get("Settings")) d.settings = *s;
    const Json *g = m.second.get("Guest");
    const Json *b = m.second.get("Boot");
    d.guestAdded = g && g->isBool() && g->asBool();
    d.boot = b && b->isBool() && b->asBool();
    sys.vpci[m.first] = d;
  }
}

}  // namespace hcssim
