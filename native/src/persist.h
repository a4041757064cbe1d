// Trace file (one JSON line per API call) and state-file persistence.
#ifndef HCSSIM_PERSIST_H
#define HCSSIM_PERSIST_H

#include <string>

#include "computecore.h"
#include "json.h"

namespace hcssim {

// path empty = off.
void setTracePath(const std::string &path);
bool traceEnabled();
// {"fn","id","doc","hr"}: one write(2) of one line, O_APPEND.
void traceCall(const std::string &fn, const std::string *id, const Json *doc, HRESULT hr);

// Writes the file atomically (temp file, fsync, rename). Returns false with error on failure.
bool writeFileAtomically(const std::string &path, const std::string &content, std::string &error);
bool readWholeFile(const std::string &path, std::string &out, bool &exists);

}  // namespace hcssim

#endif
