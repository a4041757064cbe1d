#include "core.h"
#include "layers.h"

#include "persist.h"

namespace hcssim {

Core &core() {
  static Core *c = new Core();
  return *c;
}

void saveStateLocked() {
  Core &c = core();
  if (c.stateFile.empty()) return;
  Json root = Json::object();
  root.set("Version", Json::number(1));
  Json systems = Json::array();
  for (const auto &e : c.registry)
    if (e.second->status == SystemRec::Status::Live) systems.push(systemToPersist(e.second->sys));
  root.set("Systems", systems);
  Json grants = Json::array();
  for (const auto &g : c.grants) {
    Json gj = Json::object();
    gj.set("VmId", Json::string(g.first));
    gj.set("Path", Json::string(g.second));
    grants.push(gj);
  }
  root.set("Grants", grants);
  std::string err;
  if (!writeFileAtomically(c.stateFile, toJson(root) + "\n", err))
    fail(HCS_E_FAIL, "hcssim: cannot write state file " + c.stateFile + ": " + err);
}

void dropAllLocked() {
  Core &c = core();
  for (auto &e : c.registry) e.second->status = SystemRec::Status::Dropped;
  c.registry.clear();
  c.grants.clear();
  dropHostLayersLocked();
}

bool loadStateLocked(const std::string &path, std::string &error) {
  Core &c = core();
  std::string text;
  bool exists = false;
  if (!readWholeFile(path, text, exists)) {
    error = "cannot read " + path;
    return false;
  }
  if (!exists) {
    c.stateFile = path;
    try {
      saveStateLocked();
    } catch (const HcsFailure &f) {
      error = f.message;
      return false;
    }
    return true;
  }
  Json root;
  if (!parseJson(text, root, error)) {
    error = "state file " + path + " is not valid JSON: " + error;
    return false;
  }
  const Json *systems = root.get("Systems");
  const Json *grants = root.get("Grants");
  if (!root.isObject() || !systems || !systems->isArray() || !grants || !grants->isArray()) {
    error = "state file " + path + ": expected {\"Version\", \"Systems\": [], \"Grants\": []}";
    return false;
  }
  std::map<std::string, SystemRecPtr> loaded;
  for (const auto &sj : systems->items()) {
    auto rec = std::make_shared<SystemRec>();
    if (!systemFromPersist(sj, rec->sys, error)) {
      error = "state file " + path + ": " + error;
      return false;
    }
    if (rec->sys.state == "Stopped") continue;  // no handle can refer to it any more
    rec->id = rec->sys.id;
    rec->status = SystemRec::Status::Live;
    loaded[rec->id] = rec;
  }
  std::vector<std::pair<std::string, std::string>> loadedGrants;
  for (const auto &g : grants->items()) {
    const Json *v = g.get("VmId");
    const Json *p = g.get("Path");
    if (!v || !v->isString() || !p || !p->isString()) {
      error = "state file " + path + ": malformed grant";
      return false;
    }
    loadedGrants.emplace_back(v->asString(), p->asString());
  }
  dropAllLocked();
  c.registry = std::move(loaded);
  c.grants = std::move(loadedGrants);
  c.stateFile = path;
  return true;
}

void maybeUnregisterLocked(const SystemRecPtr &rec) {
  Core &c = core();
  if (rec->status != SystemRec::Status::Live || rec->handles > 0 || rec->sys.state != "Stopped") return;
  auto it = c.registry.find(rec->id);
  if (it != c.registry.end() && it->second == rec) {
    c.registry.erase(it);
    rec->status = SystemRec::Status::Dropped;
    saveStateLocked();
  }
}

Json grantsForLocked(const std::string &vmId) {
  Json a = Json::array();
  for (const auto &g : core().grants)
    if (g.first == vmId) {
      Json gj = Json::object();
      gj.set("VmId", Json::string(g.first));
      gj.set("Path", Json::string(g.second));
      a.push(gj);
    }
  return a;
}

}  // namespace hcssim
