#include "persist.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <map>
#include <mutex>
#include <vector>

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

// Calls by function name, counted per thread: a thread counts into its own shard (its own
// mutex, which only a reader of the totals ever contends for), so the simulator's threads never
// wait on one another to count a call. A thread's shard is registered on its first call; when the
// thread exits, its counts move to `retired` and the shard is freed (threads that come and go
// leave no shards behind). std::less<> finds a name by string_view without a copy.
using CountsByFn = std::map<std::string, uint64_t, std::less<>>;
struct CallShard {
  std::mutex m;
  CountsByFn byFn;
};
struct CallShards {
  std::mutex m;
  std::vector<CallShard *> live;
  CountsByFn retired;  // the counts of threads that have exited
};
CallShards &callShards() {
  static CallShards *c = new CallShards();  // never destroyed: threads may count until exit
  return *c;
}
// Owns the calling thread's shard; its destructor runs when the thread exits.
struct OwnShard {
  CallShard *shard = nullptr;
  CallShard &get() {
    if (!shard) {
      auto *fresh = new CallShard();
      CallShards &c = callShards();
      std::lock_guard<std::mutex> lock(c.m);
      c.live.push_back(fresh);
      shard = fresh;
    }
    return *shard;
  }
  ~OwnShard() {
    if (!shard) return;
    {
      CallShards &c = callShards();
      std::lock_guard<std::mutex> lock(c.m);
      for (const auto &e : shard->byFn) c.retired[e.first] += e.second;
      for (auto it = c.live.begin(); it != c.live.end(); ++it) {
        if (*it == shard) {
          c.live.erase(it);
          break;
        }
      }
    }
    delete shard;  // no reader can reach it any more
  }
};
thread_local OwnShard ownShard;
}  // namespace

void countCall(std::string_view fn) {
  CallShard &s = ownShard.get();
  std::lock_guard<std::mutex> lock(s.m);
  auto it = s.byFn.find(fn);
  if (it != s.byFn.end()) ++it->second;
  else s.byFn.emplace(std::string(fn), 1);
}

Json callCountsJson() {
  CountsByFn totals;
  {
    CallShards &c = callShards();
    std::lock_guard<std::mutex> lock(c.m);
    totals = c.retired;
    for (CallShard *shard : c.live) {
      std::lock_guard<std::mutex> own(shard->m);
      for (const auto &e : shard->byFn) totals[e.first] += e.second;
    }
  }
  Json out = Json::object();
  for (const auto &e : totals) out.set(e.first, Json::number(static_cast<double>(e.second)));
  return out;
}

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

void traceCall(std::string_view fn, const std::string *id, const Json *doc, HRESULT hr) {
  countCall(fn);
  TraceState &t = trace();
  if (!t.on.load()) return;
  std::lock_guard<std::mutex> lock(t.m);
  if (t.fd < 0) return;
  Json line = Json::object();
  line.set("fn", Json::string(std::string(fn)));
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
