#include "persist.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

namespace hcssim {

namespace {
struct TraceState {
  std::mutex m;
  std::string path;
  int fd = -1;
  // fd >= 0, readable without the lock: every completion asks, and the workers would otherwise
  // queue on this mutex for nothing when no trace file is set (the common case).
  std::atomic<bool> on{false};
};
TraceState &trace() {
  static TraceState *t = new TraceState();
  return *t;
}
}  // namespace

void setTracePath(const std::string &path) {
  TraceState &t = trace();
  std::lock_guard<std::mutex> lock(t.m);
  if (t.fd >= 0) ::close(t.fd);
  t.fd = -1;
  t.path = path;
  if (!path.empty()) t.fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  t.on = t.fd >= 0;
}

bool traceEnabled() { return trace().on.load(); }

void traceCall(const std::string &fn, const std::string *id, const Json *doc, HRESULT hr) {
  TraceState &t = trace();
  if (!t.on.load()) return;
  std::lock_guard<std::mutex> lock(t.m);
  if (t.fd < 0) return;
  Json line = Json::object();
  line.set("fn", Json::string(fn));
  line.set("id", id ? Json::string(*id) : Json());
  line.set("doc", doc ? *doc : Json());
  line.set("hr", Json::number(hr));
  std::string text = toJson(line) + "\n";
  size_t off = 0;
  while (off < text.size()) {  // a single write for regular files; loop only on EINTR / short writes
    ssize_t n = ::write(t.fd, text.data() + off, text.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += static_cast<size_t>(n);
  }
}

bool writeFileAtomically(const std::string &path, const std::string &content, std::string &error) {
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    error = std::strerror(errno);
    return false;
  }
  size_t off = 0;
  while (off < content.size()) {
    ssize_t n = ::write(fd, content.data() + off, content.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      error = std::strerror(errno);
      ::close(fd);
      ::unlink(tmp.c_str());
      return false;
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    error = std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    error = std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

bool readWholeFile(const std::string &path, std::string &out, bool &exists) {
  out.clear();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    exists = false;
    return errno == ENOENT;
  }
  exists = true;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      ::close(fd);
      return false;
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return true;
}

}  // namespace hcssim
