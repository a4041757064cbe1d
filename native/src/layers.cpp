// Host layer API and bind filter of the simulator; see include/hostlayers.h and layers.h.
//
// Model: a layer (keyed by its full path, HomeDir joined with id) is activated, then prepared over
// its parents (each an existing folder, LayerId = NameToGuid(last path element), immediate parent
// first). A read-write layer (its folder holds sandbox.vhdx) gets a volume `\\?\Volume{<v5 of
// path>}`; a read-only one's mount path is its folder. A mapping binds a root folder (created if
// missing; its parent must exist) to a target: a prepared layer's volume (optionally with a sub
// path that must exist in the layer folder, e.g. `\Files`) or an existing folder. Ordering is
// enforced: no unprepare while a mapping uses the volume, no deactivate while prepared.
#include "layers.h"

#include <sys/stat.h>
#include <sys/types.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "config.h"
#include "core.h"
#include "hostlayers.h"
#include "json.h"
#include "persist.h"
#include "uuid.h"

using namespace hcssim;

namespace {

const HRESULT kPathNotFound = static_cast<HRESULT>(0x80070003);
const HRESULT kInsufficientBuffer = static_cast<HRESULT>(0x8007007A);
const HRESULT kNotReady = static_cast<HRESULT>(0x80070015);

struct LayerRec {
  bool activated = false;
  bool prepared = false;
  bool readWrite = false;
  std::vector<std::string> parents;
};

struct Mapping {
  std::string target;
  uint32_t flags = 0;
};

struct HostLayers {
  std::map<std::string, LayerRec> layers;
  std::map<std::string, Mapping> mappings;  // root -> mapping
  std::string loadedFor;                    // state file the model was last synchronised with
};

HostLayers &model() {
  static HostLayers *m = new HostLayers();
  return *m;
}

bool isDirectory(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool isFile(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string parentOf(const std::string &p) {
  size_t end = p.find_last_not_of("/\\");
  if (end == std::string::npos) return std::string();
  size_t sep = p.find_last_of("/\\", end);
  if (sep == std::string::npos) return std::string();
  return sep == 0 ? p.substr(0, 1) : p.substr(0, sep);
}

std::string baseOf(const std::string &p) {
  size_t end = p.find_last_not_of("/\\");
  if (end == std::string::npos) return std::string();
  size_t sep = p.find_last_of("/\\", end);
  return p.substr(sep == std::string::npos ? 0 : sep + 1, end - (sep == std::string::npos ? 0 : sep + 1) + 1);
}

std::string layerPath(const DriverInfo *info, PCWSTR id) {
  std::string path = utf16ToUtf8(id);
  std::string home = info && info->HomeDir ? utf16ToUtf8(info->HomeDir) : std::string();
  if (home.empty()) return path;
  char sep = home.find('\\') != std::string::npos ? '\\' : '/';
  return home.back() == sep ? home + path : home + sep + path;
}

GUID nameToGuid(const std::string &name) {
  static const UuidBytes ns = {0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8};
  return uuidToGuid(uuidV5(ns, name));
}

std::string volumeOf(const std::string &path) {
  static const UuidBytes ns = {0x3c, 0x1f, 0x6a, 0x52, 0x0e, 0x8b, 0x4d, 0x7a, 0x9f, 0x21, 0x5b, 0x6e, 0x44, 0x90, 0xa1, 0x0d};
  return "\\\\?\\Volume{" + formatUuid(uuidV5(ns, path)) + "}";
}

std::string mountPathOf(const std::string &path, const LayerRec &l) { return l.readWrite ? volumeOf(path) : path; }

// ---------------------------------------------------------------- persistence

std::string persistPath() {
  const std::string &sf = core().stateFile;
  return sf.empty() ? std::string() : sf + ".hostlayers";
}

Json stateJson(const HostLayers &m) {
  Json root = Json::object();
  Json layers = Json::array();
  for (const auto &e : m.layers) {
    Json l = Json::object();
    l.set("Path", Json::string(e.first));
    l.set("Activated", Json::boolean(e.second.activated));
    l.set("Prepared", Json::boolean(e.second.prepared));
    l.set("ReadWrite", Json::boolean(e.second.readWrite));
    Json parents = Json::array();
    for (const auto &p : e.second.parents) parents.push(Json::string(p));
    l.set("Parents", parents);
    l.set("MountPath", Json::string(mountPathOf(e.first, e.second)));
    layers.push(l);
  }
  root.set("Layers", layers);
  Json maps = Json::array();
  for (const auto &e : m.mappings) {
    Json b = Json::object();
    b.set("Root", Json::string(e.first));
    b.set("Target", Json::string(e.second.target));
    b.set("Flags", Json::number(e.second.flags));
    maps.push(b);
  }
  root.set("Bindings", maps);
  return root;
}

void fromJson(const Json &root, HostLayers &m) {
  m.layers.clear();
  m.mappings.clear();
  auto str = [](const Json &o, const char *k) {
    const Json *v = o.get(k);
    return v && v->isString() ? v->asString() : std::string();
  };
  auto flag = [](const Json &o, const char *k) {
    const Json *v = o.get(k);
    return v && v->isBool() && v->asBool();
  };
  if (const Json *layers = root.get("Layers"))
    for (const auto &l : layers->items()) {
      LayerRec r;
      r.activated = flag(l, "Activated");
      r.prepared = flag(l, "Prepared");
      r.readWrite = flag(l, "ReadWrite");
      if (const Json *ps = l.get("Parents"))
        for (const auto &p : ps->items())
          if (p.isString()) r.parents.push_back(p.asString());
      m.layers[str(l, "Path")] = r;
    }
  if (const Json *maps = root.get("Bindings"))
    for (const auto &b : maps->items()) {
      const Json *f = b.get("Flags");
      m.mappings[str(b, "Root")] = Mapping{str(b, "Target"), f && f->isNumber() ? static_cast<uint32_t>(f->asInt()) : 0};
    }
}

// With the model mutex held: adopts the persisted host state when the state file changed.
void syncLocked() {
  HostLayers &m = model();
  std::string path = persistPath();
  if (path.empty() || path == m.loadedFor) return;
  m.loadedFor = path;
  std::string text, error;
  bool exists = false;
  Json root;
  if (readWholeFile(path, text, exists) && exists && parseJson(text, root, error)) fromJson(root, m);
}

void saveLocked() {
  std::string path = persistPath();
  if (path.empty()) return;
  std::string error;
  writeFileAtomically(path, toJson(stateJson(model())), error);
}

// ---------------------------------------------------------------- one call

struct Call {
  const char *fn;
  std::string id;
  Json doc = Json::object();
};

// Runs `body` under the model mutex with the fault and latency rules of `fn`; traces the result.
template <typename F>
HRESULT run(Call &call, F body) {
  double latency = pickLatencyMs(call.fn);
  if (latency > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(latency));
  HRESULT hr = HCS_S_OK;
  {
    std::lock_guard<std::mutex> lock(core().modelMu);
    syncLocked();
    FaultHit f = matchFault(call.fn, &call.doc);
    if (f.hit) {
      hr = f.hr;
    } else {
      hr = body(model());
      if (hr >= 0) saveLocked();
    }
  }
  traceCall(call.fn, call.id.empty() ? nullptr : &call.id, &call.doc, hr);
  return hr;
}

Call layerCall(const char *fn, const DriverInfo *info, PCWSTR id) {
  Call c{fn, id ? layerPath(info, id) : std::string()};
  if (id) c.doc.set("Path", Json::string(c.id));
  if (info) c.doc.set("Flavour", Json::number(info->Flavour));
  return c;
}

bool volumeInUse(const HostLayers &m, const std::string &volume) {
  for (const auto &e : m.mappings)
    if (e.second.target.compare(0, volume.size(), volume) == 0) return true;
  return false;
}

}  // namespace

namespace hcssim {
void dropHostLayersLocked() {
  HostLayers &m = model();
  m.layers.clear();
  m.mappings.clear();
  m.loadedFor.clear();
}
}  // namespace hcssim

extern "C" {

HCS_API HRESULT HCS_CALL ActivateLayer(const DriverInfo *info, PCWSTR id) {
  Call call = layerCall("ActivateLayer", info, id);
  return run(call, [&](HostLayers &m) -> HRESULT {
    if (!info || !id || call.id.empty()) return HCS_E_INVALIDARG;
    if (!isDirectory(call.id)) return kPathNotFound;
    LayerRec &l = m.layers[call.id];
    if (l.activated) return HCS_E_ALREADY_EXISTS_WIN32;
    l.activated = true;
    l.readWrite = isFile(call.id + "/sandbox.vhdx");
    return HCS_S_OK;
  });
}

HCS_API HRESULT HCS_CALL PrepareLayer(const DriverInfo *info, PCWSTR id, const WC_LAYER_DESCRIPTOR *layers, ULONG count) {
  Call call = layerCall("PrepareLayer", info, id);
  Json parents = Json::array();
  for (ULONG i = 0; layers && i < count; ++i) {
    Json p = Json::object();
    p.set("Path", Json::string(layers[i].Path ? utf16ToUtf8(layers[i].Path) : std::string()));
    const GUID &g = layers[i].LayerId;
    UuidBytes b{};
    b[0] = g.Data1 >> 24, b[1] = g.Data1 >> 16, b[2] = g.Data1 >> 8, b[3] = g.Data1;
    b[4] = g.Data2 >> 8, b[5] = g.Data2, b[6] = g.Data3 >> 8, b[7] = g.Data3;
    std::memcpy(b.data() + 8, g.Data4, 8);
    p.set("LayerId", Json::string(formatUuid(b)));
    p.set("Flags", Json::number(layers[i].Flags));
    parents.push(p);
  }
  call.doc.set("Layers", parents);
  return run(call, [&](HostLayers &m) -> HRESULT {
    if (!info || !id || call.id.empty() || (count > 0 && !layers)) return HCS_E_INVALIDARG;
    auto it = m.layers.find(call.id);
    if (it == m.layers.end() || !it->second.activated) return kNotReady;
    if (it->second.prepared) return HCS_E_ALREADY_EXISTS_WIN32;
    std::vector<std::string> paths;
    for (ULONG i = 0; i < count; ++i) {
      if (!layers[i].Path) return HCS_E_INVALIDARG;
      std::string p = utf16ToUtf8(layers[i].Path);
      if ((layers[i].Flags & 0x7fffffffu) != 0) return HCS_E_INVALIDARG;
      if (!isDirectory(p)) return kPathNotFound;
      GUID want = nameToGuid(baseOf(p));
      if (std::memcmp(&want, &layers[i].LayerId, sizeof(GUID)) != 0) return HCS_E_INVALIDARG;
      paths.push_back(p);
    }
    it->second.prepared = true;
    it->second.parents = paths;
    return HCS_S_OK;
  });
}

HCS_API HRESULT HCS_CALL GetLayerMountPath(const DriverInfo *info, PCWSTR id, SIZE_T *length, PWSTR buffer) {
  Call call = layerCall("GetLayerMountPath", info, id);
  call.doc.set("Buffer", Json::boolean(buffer != nullptr));
  return run(call, [&](HostLayers &m) -> HRESULT {
    if (!info || !id || call.id.empty()) return HCS_E_INVALIDARG;
    if (!length) return HCS_E_POINTER;
    auto it = m.layers.find(call.id);
    if (it == m.layers.end() || !it->second.activated) return kNotReady;
    std::u16string path = utf8ToUtf16(mountPathOf(call.id, it->second));
    SIZE_T need = path.size() + 1;
    if (!buffer) {
      *length = need;
      return HCS_S_OK;
    }
    if (*length < need) {
      *length = need;
      return kInsufficientBuffer;
    }
    std::memcpy(buffer, path.data(), path.size() * sizeof(char16_t));
    buffer[path.size()] = 0;
    *length = need;
    return HCS_S_OK;
  });
}

HCS_API HRESULT HCS_CALL UnprepareLayer(const DriverInfo *info, PCWSTR id) {
  Call call = layerCall("UnprepareLayer", info, id);
  return run(call, [&](HostLayers &m) -> HRESULT {
    if (!info || !id || call.id.empty()) return HCS_E_INVALIDARG;
    auto it = m.layers.find(call.id);
    if (it == m.layers.end() || !it->second.prepared) return HCS_E_NOT_FOUND;
    if (volumeInUse(m, mountPathOf(call.id, it->second))) return HCS_E_BUSY_WIN32;
    it->second.prepared = false;
    it->second.parents.clear();
    return HCS_S_OK;
  });
}

HCS_API HRESULT HCS_CALL DeactivateLayer(const DriverInfo *info, PCWSTR id) {
  Call call = layerCall("DeactivateLayer", info, id);
  return run(call, [&](HostLayers &m) -> HRESULT {
    if (!info || !id || call.id.empty()) return HCS_E_INVALIDARG;
    auto it = m.layers.find(call.id);
    if (it == m.layers.end() || !it->second.activated) return HCS_E_NOT_FOUND;
    if (it->second.prepared) return HCS_E_BUSY_WIN32;
    m.layers.erase(it);
    return HCS_S_OK;
  });
}

HCS_API HRESULT HCS_CALL BfSetupFilter(HANDLE jobHandle, ULONG flags, PCWSTR root, PCWSTR target, const PCWSTR *exceptions,
                                       ULONG exceptionCount) {
  Call call{"BfSetupFilter", root ? utf16ToUtf8(root) : std::string()};
  call.doc.set("Root", Json::string(call.id));
  call.doc.set("Target", Json::string(target ? utf16ToUtf8(target) : std::string()));
  call.doc.set("Flags", Json::number(flags));
  return run(call, [&](HostLayers &m) -> HRESULT {
    const uint32_t known = BINDFLT_FLAG_READ_ONLY_MAPPING | BINDFLT_FLAG_NO_MULTIPLE_TARGETS | BINDFLT_FLAG_USE_CURRENT_SILO_MAPPING;
    if (jobHandle || !root || !target || call.id.empty() || (flags & ~known) || (exceptionCount > 0 && !exceptions)) return HCS_E_INVALIDARG;
    std::string t = utf16ToUtf8(target);
    std::string parent = parentOf(call.id);
    if (parent.empty() || !isDirectory(parent)) return kPathNotFound;
    if (m.mappings.count(call.id)) return HCS_E_INVALIDARG;  // NO_MULTIPLE_TARGETS: one target per root
    if (t.rfind("\\\\?\\Volume{", 0) == 0) {
      // A layer volume, maybe with a sub path: it must belong to a prepared layer and exist there.
      bool found = false;
      for (const auto &e : m.layers) {
        std::string v = mountPathOf(e.first, e.second);
        if (!e.second.readWrite || t.compare(0, v.size(), v) != 0) continue;
        std::string rest = t.substr(v.size());
        while (!rest.empty() && (rest[0] == '\\' || rest[0] == '/')) rest.erase(0, 1);
        while (!rest.empty() && (rest.back() == '\\' || rest.back() == '/')) rest.pop_back();
        if (!e.second.prepared) return kNotReady;
        if (!rest.empty() && !isDirectory(e.first + "/" + rest)) return kPathNotFound;
        found = true;
        break;
      }
      if (!found) return kPathNotFound;
    } else if (!isDirectory(t)) {
      return kPathNotFound;
    }
    if (!isDirectory(call.id) && ::mkdir(call.id.c_str(), 0755) != 0) return kPathNotFound;
    m.mappings[call.id] = Mapping{t, flags};
    return HCS_S_OK;
  });
}

HCS_API HRESULT HCS_CALL BfRemoveMapping(HANDLE jobHandle, PCWSTR root) {
  Call call{"BfRemoveMapping", root ? utf16ToUtf8(root) : std::string()};
  call.doc.set("Root", Json::string(call.id));
  return run(call, [&](HostLayers &m) -> HRESULT {
    if (jobHandle || !root || call.id.empty()) return HCS_E_INVALIDARG;
    auto it = m.mappings.find(call.id);
    if (it == m.mappings.end()) return HCS_E_NOT_FOUND;
    m.mappings.erase(it);
    return HCS_S_OK;
  });
}

HCS_API HRESULT HCS_CALL HcsSimHostLayers(PWSTR *state) {
  if (!state) return HCS_E_POINTER;
  std::u16string text;
  {
    std::lock_guard<std::mutex> lock(core().modelMu);
    syncLocked();
    text = utf8ToUtf16(toJson(stateJson(model())));
  }
  auto *buf = static_cast<char16_t *>(std::malloc((text.size() + 1) * sizeof(char16_t)));
  if (!buf) return HCS_E_OUTOFMEMORY;
  std::memcpy(buf, text.data(), text.size() * sizeof(char16_t));
  buf[text.size()] = 0;
  *state = buf;
  return HCS_S_OK;
}

}  // extern "C"
