// The simulator's registry of compute systems, grants and system handles, guarded by one model
// mutex, plus persistence of that registry to the state file.
#ifndef HCSSIM_CORE_H
#define HCSSIM_CORE_H

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "model.h"

namespace hcssim {

struct SystemRec {
  enum class Status { Pending, Live, Failed, Dropped };
  std::string id;
  Status status = Status::Pending;
  int handles = 0;
  System sys;
};
using SystemRecPtr = std::shared_ptr<SystemRec>;

struct Core {
  std::mutex modelMu;  // guards everything below and every SystemRec
  std::map<std::string, SystemRecPtr> registry;
  std::vector<std::pair<std::string, std::string>> grants;  // (vmId, path)
  std::string stateFile;                                   // empty = off
};

// Allocated on first use with new and never deleted (no static destructors racing with workers).
Core &core();

// With modelMu held: writes the state file if one is configured. Throws HcsFailure(E_FAIL) on I/O error.
void saveStateLocked();
// With modelMu held: replaces the registry and grants from the file if it exists (else writes the
// current state to it). Returns false with error if the file is malformed.
bool loadStateLocked(const std::string &path, std::string &error);
// With modelMu held: drops every system and grant.
void dropAllLocked();
// With modelMu held: removes a stopped system without handles from the registry.
void maybeUnregisterLocked(const SystemRecPtr &rec);

Json grantsForLocked(const std::string &vmId);

}  // namespace hcssim

#endif
