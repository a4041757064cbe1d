// Trace file (one JSON line per API call) and state-file persistence.
#ifndef HCSSIM_PERSIST_H
#define HCSSIM_PERSIST_H

#include <string>
#include <string_view>

#include "computecore.h"
#include "json.h"

namespace hcssim {

// path empty = off.
void setTracePath(const std::string &path);
bool traceEnabled();
// Counts the call (countCall), then, with a trace file set, writes {"fn","id","doc","hr"}: one
// write(2) of one line, O_APPEND.
void traceCall(std::string_view fn, const std::string *id, const Json *doc, HRESULT hr);
// Counts one API call received, by function name (what traceCall would trace): for the callers
// that skip traceCall when no trace file is set. Counted whether or not a trace file is set.
void countCall(std::string_view fn);
// {"<fn>": count, ...}: the calls counted since the library was loaded (a reset keeps them).
Json callCountsJson();

// Writes the file atomically (temp file, fsync, rename). Returns false with error on failure.
bool writeFileAtomically(const std::string &path, const std::string &content, std::string &error);
bool readWholeFile(const std::string &path, std::string &out, bool &exists);

}  // namespace hcssim

#endif
