// The simulator's fake guest and its one I/O thread; see gcs.h.
#include "gcs.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "config.h"
#include "events.h"
#include "gcs-protocol.h"
#include "model.h"
#include "persist.h"
#include "scheduler.h"

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

namespace hcssim {

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kRedial = std::chrono::milliseconds(100);
constexpr auto kStateCheck = std::chrono::milliseconds(500);
// What a trace line of a request the guest dropped (fault `drop`) reports: HCS_E_CONNECTION_CLOSED.
constexpr HRESULT kDroppedHr = static_cast<HRESULT>(0x8037010Au);

struct Command {
  enum Kind { Start, Redial, Notify } kind;
  SystemRecPtr rec;
  std::string dir;
  std::string id;
  std::string body;
};

struct Shared {
  std::mutex m;  // leaf lock
  std::vector<Command> commands;
  bool reset = false;
  bool releaseHangs = false;
  bool poke = false;
  bool dial = true;
  std::string dir;  // control override
  bool started = false;
  int wake[2] = {-1, -1};
  // mirrored by the thread after every round
  std::set<std::string> bridges;  // system ids with a connected bridge
  int64_t vms = 0, dialing = 0, dials = 0, messages = 0;
  // gcsStats waits for a round that began after it asked (statsWanted): the round's mirror sets
  // statsServed to the request it began with and notifies.
  uint64_t statsWanted = 0, statsServed = 0;
  std::condition_variable statsMirrored;
};

Shared &shared() {
  static Shared *s = new Shared();
  return *s;
}

void setNonBlocking(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  fcntl(fd, F_SETFD, FD_CLOEXEC);
}

void wakeLocked(Shared &s) {
  if (s.wake[1] >= 0) {
    char c = 1;
    ssize_t ignored = write(s.wake[1], &c, 1);  // a full pipe already wakes the thread
    (void)ignored;
  }
}

void loop();

// With s.m held: starts the thread on first use.
void ensureThreadLocked(Shared &s) {
  if (s.started) return;
  if (pipe(s.wake) != 0) return;
  setNonBlocking(s.wake[0]);
  setNonBlocking(s.wake[1]);
  s.started = true;
  std::thread([] {
    nameThread("hcssim-guest");
    loop();
  }).detach();
}

std::string hvsockDir(const Shared &s) {
  if (!s.dir.empty()) return s.dir;
  const char *env = std::getenv("UVM_HVSOCK_DIR");
  if (env && *env) return env;
  const char *tmp = std::getenv("TMPDIR");
  std::string base = tmp && *tmp ? tmp : "/tmp";
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  return base + "/uvm-hvsock";
}

// ------------------------------------------------------------------------------------------------
// The thread's state (touched by the guest thread only).

enum class Stage { Entropy, Log, Bridge, Done };

struct Conn {
  int fd = -1;
  bool connecting = false;
  std::string out;
  size_t outPos = 0;
  bool open() const { return fd >= 0 && !connecting; }
  void close() {
    if (fd >= 0) ::close(fd);
    fd = -1;
    connecting = false;
    out.clear();
    outPos = 0;
  }
};

struct Deferred {
  gcs::Message m;
  FaultHit fault;
  Clock::time_point due;
  bool hung = false;
};

struct Guest {
  SystemRecPtr rec;
  std::string id;
  std::string dir;
  bool lcow = true;
  bool bridgeWanted = true;
  Stage stage = Stage::Entropy;
  Clock::time_point nextDial;
  Conn entropy, log, bridge;
  gcs::FrameReader reader;
  gcs::Session session;
  std::vector<Deferred> deferred;
  size_t entropyBytes = 0;

  Conn &dialing() { return stage == Stage::Entropy ? entropy : stage == Stage::Log ? log : bridge; }
  const char *service() const {
    if (stage == Stage::Entropy) return gcs::kLcowEntropyService;
    if (stage == Stage::Log) return gcs::kLcowLogService;
    return lcow ? gcs::kLcowGcsService : gcs::kWcowGcsService;
  }
  void closeAll() {
    entropy.close();
    log.close();
    bridge.close();
    deferred.clear();
  }
};

using Guests = std::map<std::string, std::unique_ptr<Guest>>;

void trace(const Guest &g, const std::string &fn, const Json &doc, HRESULT hr) {
  if (traceEnabled()) traceCall(fn, &g.id, &doc, hr);
  else countCall(fn);
}

// Writes what it can; false when the connection broke.
bool flush(Conn &c) {
  while (c.fd >= 0 && !c.connecting && c.outPos < c.out.size()) {
    ssize_t n = send(c.fd, c.out.data() + c.outPos, c.out.size() - c.outPos, MSG_NOSIGNAL);
    if (n > 0) {
      c.outPos += static_cast<size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return true;
    } else {
      return false;
    }
  }
  if (c.outPos == c.out.size()) {
    c.out.clear();
    c.outPos = 0;
  }
  return true;
}

void dropBridge(Guest &g, Clock::time_point now) {
  g.bridge.close();
  g.deferred.clear();
  g.session.negotiated = false;
  g.reader = gcs::FrameReader();
  if (g.bridgeWanted) {
    g.stage = Stage::Bridge;  // the HEAD GCS redials every 100 ms after a drop
    g.nextDial = now + kRedial;
  }
}

void queue(Guest &g, const std::string &bytes, Clock::time_point now) {
  g.bridge.out += bytes;
  if (!flush(g.bridge)) dropBridge(g, now);
}

void onConnected(Guest &g, Clock::time_point now) {
  if (g.stage == Stage::Entropy) {
    return;  // read until EOF
  }
  if (g.stage == Stage::Log) {
    // vsockexec forwards the GCS's stderr: JSON log lines (-log-format json).
    const char *lines[] = {"{\"level\":\"info\",\"msg\":\"GCS started\",\"source\":\"hcssim\"}\n",
                           "{\"level\":\"info\",\"msg\":\"serving the GCS bridge\",\"source\":\"hcssim\"}\n",
                           "{\"level\":\"debug\",\"msg\":\"entropy received\",\"source\":\"hcssim\"}\n"};
    for (const char *l : lines) g.log.out += l;
    if (!flush(g.log)) g.log.close();
    g.stage = g.bridgeWanted ? Stage::Bridge : Stage::Done;
    g.nextDial = now;
    return;
  }
  g.stage = Stage::Done;
  g.session.negotiated = false;
  g.reader = gcs::FrameReader();
}

void dial(Guest &g, Clock::time_point now) {
  Shared &s = shared();
  g.nextDial = now + kRedial;
  {
    std::lock_guard<std::mutex> lock(s.m);
    if (!s.dial) return;
    ++s.dials;
  }
  std::string path = g.dir + "/" + g.session.runtimeId + "-" + g.service() + ".sock";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return;  // the library cannot listen there either
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return;
  setNonBlocking(fd);
#ifdef SO_NOSIGPIPE
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
  Conn &c = g.dialing();
  int rc;
  do {
    rc = connect(fd, reinterpret_cast<sockaddr *>(&addr), sizeof addr);
  } while (rc < 0 && errno == EINTR);
  if (rc == 0) {
    c.fd = fd;
    onConnected(g, now);
  } else if (errno == EINPROGRESS) {
    c.fd = fd;
    c.connecting = true;
  } else {
    ::close(fd);  // ENOENT, ECONNREFUSED, EAGAIN (backlog full): retry in 100 ms
  }
}

// Applies a normalised guest request to the VM's guest model (the same one HcsModifyComputeSystem's
// GuestRequest uses), checked against its host state.
void applyToModel(const SystemRecPtr &rec, const Json &request) {
  Core &c = core();
  std::lock_guard<std::mutex> lock(c.modelMu);
  if (rec->status != SystemRec::Status::Live || rec->sys.state != "Running")
    fail(HCS_E_INVALID_STATE, "the virtual machine is not running");
  struct Saver {
    ~Saver() {
      try {
        saveStateLocked();
      } catch (...) {
      }
    }
  } saver;
  applyGuestOnly(rec->sys, request);
}

bool failsWithHr(const FaultHit &f) {
  return f.hit && (f.hasHr || !(f.delayMs > 0 || f.hang || f.drop || f.unknownId || f.oversized || f.badJson));
}

void respond(Guest &g, const gcs::Message &m, const FaultHit &f, Clock::time_point now) {
  gcs::Reply r;
  if (failsWithHr(f)) {
    // The guest refuses the request (nothing applied).
    Json body;
    std::string err;
    r.type = gcs::responseTypeOf(m.type);
    r.traceDoc = parseJson(m.body, body, err) ? body : Json::string(m.body);
    const Json *a = body.isObject() ? body.get("ActivityId") : nullptr;
    r.hr = f.hr;
    r.body = toJson(gcs::responseBody(f.hr, a && a->isString() ? a->asString() : gcs::kNullContainerId, f.message));
  } else {
    SystemRecPtr rec = g.rec;
    r = gcs::handle(g.session, m, [&rec](const Json &request) { applyToModel(rec, request); });
  }
  uint64_t id = f.hit && f.unknownId ? m.id | (uint64_t{1} << 62) : m.id;
  if (f.hit && f.oversized) {
    // Padding that takes the message beyond the host's 64 KiB limit.
    r.body.pop_back();
    r.body += ",\"Padding\":\"" + std::string(gcs::kHostMaxMessage, 'x') + "\"}";
  }
  // A body cut short: not JSON (the request was applied, as a guest that fails while answering).
  if (f.hit && f.badJson) r.body = r.body.substr(0, r.body.size() / 2);
  trace(g, "bridge:" + gcs::messageName(m.type), r.traceDoc, r.hr);
  queue(g, gcs::encode(r.type, id, r.body), now);
}

void onMessage(Guest &g, const gcs::Message &m, Clock::time_point now) {
  std::string fn = "bridge:" + gcs::messageName(m.type);
  {
    std::lock_guard<std::mutex> lock(shared().m);
    ++shared().messages;
  }
  Json body;
  std::string err;
  bool parsed = parseJson(m.body, body, err);
  FaultHit f = matchFault(fn.c_str(), parsed ? &body : nullptr);
  if (f.hit && f.crash) {
    // The VM dies as the request arrives: no response; the connections close with the VM.
    std::string ignored;
    trace(g, fn, parsed ? body : Json::string(m.body), kDroppedHr);
    crashSystem(g.id, f.attribution, ignored, false);  // pokes this thread to close the VM's connections
    return;
  }
  if (f.hit && f.drop) {
    trace(g, fn, parsed ? body : Json::string(m.body), kDroppedHr);
    dropBridge(g, now);
    return;
  }
  double delay = pickBridgeLatencyMs(fn) + (f.hit ? f.delayMs : 0);
  if ((f.hit && f.hang) || delay > 0) {
    Deferred d;
    d.m = m;
    d.fault = f;
    d.hung = f.hit && f.hang;
    // From the moment the request is handled (the round's `now` may be older than its arrival).
    d.due = Clock::now() + std::chrono::microseconds(static_cast<int64_t>(delay * 1000));
    g.deferred.push_back(std::move(d));
    return;
  }
  respond(g, m, f, now);
}

void onReadable(Guest &g, Conn &c, Clock::time_point now) {
  char buf[65536];
  for (;;) {
    ssize_t n = recv(c.fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n <= 0) {
      // EOF or error.
      if (&c == &g.entropy) {
        g.entropy.close();
        g.stage = Stage::Log;  // init goes on to vsockexec, which dials the log port
        g.nextDial = now;
      } else if (&c == &g.log) {
        g.log.close();
      } else {
        dropBridge(g, now);
      }
      return;
    }
    if (&c == &g.entropy) {
      g.entropyBytes += static_cast<size_t>(n);
      continue;
    }
    if (&c == &g.log) continue;  // nothing is expected from the host on the log connection
    if (!g.reader.feed(buf, static_cast<size_t>(n))) {
      dropBridge(g, now);  // size < 16: a broken stream
      return;
    }
    gcs::Message m;
    while (g.bridge.open() && g.reader.next(m)) onMessage(g, m, now);
    if (!g.reader.error().empty()) {
      dropBridge(g, now);
      return;
    }
    if (!g.bridge.open()) return;
  }
}

void onConnectDone(Guest &g, Conn &c, Clock::time_point now) {
  int err = 0;
  socklen_t len = sizeof err;
  if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) {
    c.close();
    return;
  }
  c.connecting = false;
  onConnected(g, now);
}

void closeStopped(Guests &guests) {
  std::vector<std::string> dead;
  {
    std::lock_guard<std::mutex> lock(core().modelMu);
    for (auto &e : guests) {
      const SystemRec &r = *e.second->rec;
      if (r.status != SystemRec::Status::Live || r.sys.state != "Running") dead.push_back(e.first);
    }
  }
  for (const auto &id : dead) {
    guests[id]->closeAll();
    guests.erase(id);
  }
}

void loop() {
  Shared &s = shared();
  Guests guests;
  Clock::time_point lastCheck = Clock::now();
  std::vector<pollfd> fds;
  struct Slot {
    Guest *g;
    Conn *c;
  };
  std::vector<Slot> slots;
  for (;;) {
    std::vector<Command> commands;
    bool reset, release, poke;
    uint64_t statsRound;
    {
      std::lock_guard<std::mutex> lock(s.m);
      statsRound = s.statsWanted;
      commands.swap(s.commands);
      reset = s.reset;
      release = s.releaseHangs;
      poke = s.poke;
      s.reset = s.releaseHangs = s.poke = false;
    }
    Clock::time_point now = Clock::now();
    if (reset) {
      for (auto &e : guests) e.second->closeAll();
      guests.clear();
    }
    for (auto &cmd : commands) {
      if (cmd.kind == Command::Notify) {
        auto it = guests.find(cmd.id);
        if (it == guests.end() || !it->second->bridge.open()) continue;
        Json doc;
        std::string err;
        parseJson(cmd.body, doc, err);
        trace(*it->second, "bridge:ContainerNotification", doc, 0);
        queue(*it->second, gcs::encode(gcs::kContainerNotification, 0, cmd.body), now);
        continue;
      }
      auto g = std::make_unique<Guest>();
      g->rec = cmd.rec;
      g->id = cmd.rec->id;
      g->dir = cmd.dir;
      {
        std::lock_guard<std::mutex> lock(core().modelMu);
        const System &sys = cmd.rec->sys;
        g->session.runtimeId = sys.runtimeId;
        g->lcow = sys.os == GuestOs::Linux;
        g->bridgeWanted = !sys.guestConnection;
      }
      g->session.profile = g->lcow ? gcs::Profile::Lcow : gcs::Profile::Wcow;
      g->stage = cmd.kind == Command::Redial ? Stage::Bridge : g->lcow ? Stage::Entropy : Stage::Bridge;
      if (!g->bridgeWanted && g->stage == Stage::Bridge) g->stage = Stage::Done;
      g->nextDial = now;
      auto it = guests.find(g->id);
      if (it != guests.end()) it->second->closeAll();
      guests[g->id] = std::move(g);
    }
    if (poke || !commands.empty() || now - lastCheck >= kStateCheck) {
      closeStopped(guests);
      lastCheck = now;
    }
    // Dials and deferred responses that are due.
    Clock::time_point next = now + kStateCheck;
    for (auto &e : guests) {
      Guest &g = *e.second;
      if (g.stage != Stage::Done && g.dialing().fd < 0) {
        if (g.nextDial <= now) dial(g, now);
        if (g.stage != Stage::Done && g.dialing().fd < 0 && g.nextDial < next) next = g.nextDial;
      }
      if (release)
        for (auto &d : g.deferred)
          if (d.hung) {
            d.hung = false;
            d.due = now;
          }
      for (size_t i = 0; i < g.deferred.size();) {
        if (!g.deferred[i].hung && g.deferred[i].due <= now) {
          Deferred d = std::move(g.deferred[i]);
          g.deferred.erase(g.deferred.begin() + static_cast<long>(i));
          respond(g, d.m, d.fault, now);
          if (!g.bridge.open()) break;  // the deferred list was cleared with the connection
        } else {
          if (!g.deferred[i].hung && g.deferred[i].due < next) next = g.deferred[i].due;
          ++i;
        }
      }
    }
    {
      std::lock_guard<std::mutex> lock(s.m);
      s.bridges.clear();
      s.vms = static_cast<int64_t>(guests.size());
      s.dialing = 0;
      for (auto &e : guests) {
        if (e.second->bridge.open() && e.second->stage == Stage::Done && e.second->bridgeWanted) s.bridges.insert(e.first);
        if (e.second->stage != Stage::Done) ++s.dialing;
      }
      if (statsRound > s.statsServed) {
        s.statsServed = statsRound;
        s.statsMirrored.notify_all();
      }
    }
    fds.clear();
    slots.clear();
    fds.push_back(pollfd{s.wake[0], POLLIN, 0});
    slots.push_back(Slot{nullptr, nullptr});
    for (auto &e : guests) {
      Guest &g = *e.second;
      for (Conn *c : {&g.entropy, &g.log, &g.bridge}) {
        if (c->fd < 0) continue;
        short ev = c->connecting ? POLLOUT : static_cast<short>(POLLIN | (c->out.empty() ? 0 : POLLOUT));
        fds.push_back(pollfd{c->fd, ev, 0});
        slots.push_back(Slot{&g, c});
      }
    }
    auto waitMs = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now()).count() + 1;
    int timeout = guests.empty() ? -1 : static_cast<int>(waitMs < 0 ? 0 : waitMs);
    int rc = poll(fds.data(), fds.size(), timeout);
    if (rc <= 0) continue;
    now = Clock::now();
    if (fds[0].revents) {
      char drain[256];
      while (read(s.wake[0], drain, sizeof drain) > 0) {
      }
    }
    for (size_t i = 1; i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      Guest &g = *slots[i].g;
      Conn &c = *slots[i].c;
      if (c.fd != fds[i].fd) continue;  // closed meanwhile in this round
      if (c.connecting) {
        onConnectDone(g, c, now);
        continue;
      }
      if (fds[i].revents & POLLOUT) {
        if (!flush(c)) {
          if (&c == &g.bridge) dropBridge(g, now);
          else c.close();
          continue;
        }
      }
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) onReadable(g, c, now);
    }
  }
}

void command(Command cmd) {
  Shared &s = shared();
  std::lock_guard<std::mutex> lock(s.m);
  ensureThreadLocked(s);
  s.commands.push_back(std::move(cmd));
  wakeLocked(s);
}

}  // namespace

void gcsVmStarted(const SystemRecPtr &rec, bool redial) {
  std::string dir;
  {
    std::lock_guard<std::mutex> lock(shared().m);
    dir = hvsockDir(shared());
  }
  command(Command{redial ? Command::Redial : Command::Start, rec, dir, std::string(), std::string()});
}

// Sets one of the guest thread's request flags and wakes it (nothing to do before it started).
static void raiseFlag(bool Shared::*flag) {
  Shared &s = shared();
  std::lock_guard<std::mutex> lock(s.m);
  if (!s.started) return;
  s.*flag = true;
  wakeLocked(s);
}

void gcsPoke() { raiseFlag(&Shared::poke); }

void gcsReset() {
  Shared &s = shared();
  std::lock_guard<std::mutex> lock(s.m);
  s.dial = true;
  s.dir.clear();
  s.commands.clear();
  s.bridges.clear();
  if (!s.started) return;
  s.reset = true;
  wakeLocked(s);
}

void gcsReleaseHangs() { raiseFlag(&Shared::releaseHangs); }

void gcsSetDial(bool enabled) {
  Shared &s = shared();
  std::lock_guard<std::mutex> lock(s.m);
  s.dial = enabled;
  if (s.started) wakeLocked(s);
}

void gcsSetDir(const std::string &dir) {
  Shared &s = shared();
  std::lock_guard<std::mutex> lock(s.m);
  s.dir = dir;
}

bool gcsNotify(const std::string &systemId, const Json &body, std::string &error) {
  Shared &s = shared();
  std::lock_guard<std::mutex> lock(s.m);
  if (!s.bridges.count(systemId)) {
    error = "guestNotify: compute system " + systemId + " has no connected GCS bridge";
    return false;
  }
  s.commands.push_back(Command{Command::Notify, nullptr, std::string(), systemId, toJson(body)});
  wakeLocked(s);
  return true;
}

Json gcsStats() {
  Shared &s = shared();
  std::unique_lock<std::mutex> lock(s.m);
  if (s.started) {
    // As of a round that began after this call, which also checks for stopped systems: a guest
    // whose system was terminated before the call is not counted as dialing (a snapshot of the
    // round before could still count it). Bounded, in case the thread is stuck in a round.
    const uint64_t want = ++s.statsWanted;
    s.poke = true;
    wakeLocked(s);
    s.statsMirrored.wait_for(lock, std::chrono::seconds(2), [&] { return s.statsServed >= want; });
  }
  Json j = Json::object();
  j.set("Vms", Json::number(static_cast<double>(s.vms)));
  j.set("Dialing", Json::number(static_cast<double>(s.dialing)));
  j.set("Bridges", Json::number(static_cast<double>(s.bridges.size())));
  j.set("Dials", Json::number(static_cast<double>(s.dials)));
  j.set("Messages", Json::number(static_cast<double>(s.messages)));
  return j;
}

}  // namespace hcssim
