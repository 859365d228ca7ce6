// relay_floor: what relaying bytes between two loopback TCP connections costs
// on this machine, with no FTP and no proxy around it. It answers "how close
// to the floor is ftpwarden's data relay?" and "would another relay method
// lower the floor?".
//
//   relay_floor [--mib N] [--rounds R] [--kinds direct,copy,splice,sockmap]
//               [--source file|memory]
//
// Each sample: a server process sends N MiB (sendfile from a file in the page
// cache, as an FTP server does, or send from a memory buffer), a client
// process reads it all and checks the count; between them this process relays
// one of these ways:
//   direct   no relay: the client connects to the server (the reference)
//   copy     blocking recv into a 4 MiB buffer, send it on (two copies)
//   splice   splice(2) socket -> pipe (1 MiB) -> socket (no copy in user space)
//   sockmap  a BPF sk_skb verdict program redirects each skb to the other
//            socket inside the kernel; this process only waits for the end
//            (needs CAP_BPF and CAP_NET_ADMIN; skipped otherwise)
// Printed per kind, medians of the rounds, kinds interleaved within a round:
// MB/s and its ratio to direct, the relay process's own CPU seconds per GiB,
// and the whole machine's busy CPU seconds per GiB (every process and kernel
// thread: where the work went, not only whose account it landed on).

#include <linux/bpf.h>
#include <linux/sockios.h>
#include <linux/tcp.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

[[noreturn]] void die(const char* what) {
  std::fprintf(stderr, "relay_floor: %s: %s\n", what, std::strerror(errno));
  std::exit(2);
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int listen_any(std::uint16_t& port) {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(0);
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s, 4) != 0) die("listen");
  socklen_t len = sizeof a;
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return s;
}

int connect_to(std::uint16_t port) {
  const int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a = loopback(port);
  if (s < 0 || ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) die("connect");
  return s;
}

// Busy jiffies of the whole machine: user, nice, system, irq, softirq.
std::uint64_t machine_busy_ticks() {
  std::ifstream f("/proc/stat");
  std::string cpu;
  std::uint64_t v[8]{};
  f >> cpu;
  for (auto& x : v) f >> x;
  return v[0] + v[1] + v[2] + v[5] + v[6];
}

double self_cpu_s() {
  rusage r{};
  ::getrusage(RUSAGE_SELF, &r);
  return static_cast<double>(r.ru_utime.tv_sec + r.ru_stime.tv_sec) +
         static_cast<double>(r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

struct Options {
  std::uint64_t bytes = std::uint64_t{1024} << 20;
  int rounds = 3;
  std::vector<std::string> kinds{"direct", "copy", "splice", "sockmap"};
  bool from_file = true;
  std::string file;
};

// The server: sends opt.bytes to whoever connects to `lis`, then closes.
[[noreturn]] void serve(int lis, const Options& opt) {
  const int c = ::accept4(lis, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) die("accept");
  std::uint64_t left = opt.bytes;
  if (opt.from_file) {
    const int fd = ::open(opt.file.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("open source");
    off_t off = 0;
    while (left > 0) {
      const ssize_t n = ::sendfile(c, fd, &off, std::min<std::uint64_t>(left, 1 << 30));
      if (n <= 0) die("sendfile");
      left -= static_cast<std::uint64_t>(n);
    }
  } else {
    std::vector<char> buf(1 << 20, 'x');
    while (left > 0) {
      const ssize_t n = ::send(c, buf.data(), std::min<std::uint64_t>(left, buf.size()), 0);
      if (n <= 0) die("send");
      left -= static_cast<std::uint64_t>(n);
    }
  }
  ::close(c);
  std::_Exit(0);
}

// The client: reads to EOF, exits 0 when the count is right.
[[noreturn]] void drain(std::uint16_t port, std::uint64_t want) {
  const int s = connect_to(port);
  std::vector<char> buf(256 << 10);
  std::uint64_t got = 0;
  for (;;) {
    const ssize_t n = ::recv(s, buf.data(), buf.size(), 0);
    if (n < 0) die("client recv");
    if (n == 0) break;
    got += static_cast<std::uint64_t>(n);
  }
  if (got != want) {
    std::fprintf(stderr, "relay_floor: the client got %llu bytes of %llu\n", static_cast<unsigned long long>(got),
                 static_cast<unsigned long long>(want));
    std::_Exit(1);
  }
  std::_Exit(0);
}

void send_all(int s, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(s, p, n, 0);
    if (w < 0) die("send");
    p += w;
    n -= static_cast<std::size_t>(w);
  }
}

void relay_copy(int from, int to) {
  std::vector<char> buf(4 << 20);
  for (;;) {
    const ssize_t n = ::recv(from, buf.data(), buf.size(), 0);
    if (n < 0) die("recv");
    if (n == 0) break;
    send_all(to, buf.data(), static_cast<std::size_t>(n));
  }
}

void relay_splice(int from, int to) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) die("pipe");
  ::fcntl(p[0], F_SETPIPE_SZ, 1 << 20);
  for (;;) {
    ssize_t n = ::splice(from, nullptr, p[1], nullptr, 1 << 20, SPLICE_F_MOVE);
    if (n < 0) die("splice in");
    if (n == 0) break;
    while (n > 0) {
      const ssize_t w = ::splice(p[0], nullptr, to, nullptr, static_cast<std::size_t>(n), SPLICE_F_MOVE);
      if (w <= 0) die("splice out");
      n -= w;
    }
  }
  ::close(p[0]);
  ::close(p[1]);
}

// ---- sockmap: a kernel-only relay

long bpf(int cmd, bpf_attr& a) { return ::syscall(__NR_bpf, cmd, &a, sizeof a); }

constexpr bpf_insn insn(std::uint8_t code, std::uint8_t dst, std::uint8_t src, std::int16_t off, std::int32_t imm) {
  bpf_insn i{};
  i.code = code;
  i.dst_reg = dst & 0xf;
  i.src_reg = src & 0xf;
  i.off = off;
  i.imm = imm;
  return i;
}

class SockmapRelay {
 public:
  // Returns nothing when BPF cannot be used here; why_not says why.
  static inline std::string why_not;
  static std::optional<SockmapRelay> make() {
    SockmapRelay r;
    why_not = "no BPF here (needs CAP_BPF and CAP_NET_ADMIN)";
    bpf_attr a{};
    a.map_type = BPF_MAP_TYPE_SOCKMAP;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 2;
    r.socks_ = static_cast<int>(bpf(BPF_MAP_CREATE, a));
    if (r.socks_ < 0) return std::nullopt;
    a = {};
    a.map_type = BPF_MAP_TYPE_HASH;
    a.key_size = 8;  // socket cookie
    a.value_size = 4;  // the peer's index in socks_
    a.max_entries = 2;
    r.peers_ = static_cast<int>(bpf(BPF_MAP_CREATE, a));
    if (r.peers_ < 0) return std::nullopt;
    // r6 = skb; key = cookie(skb); v = peers[key]; if !v return SK_PASS;
    // return sk_redirect_map(skb, socks, *v, 0 /* egress */)
    const std::uint8_t ld_map = BPF_LD | BPF_DW | BPF_IMM;
    const bpf_insn prog[] = {
        insn(BPF_ALU64 | BPF_MOV | BPF_X, 6, 1, 0, 0),
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_get_socket_cookie),
        insn(BPF_STX | BPF_MEM | BPF_DW, 10, 0, -8, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_X, 2, 10, 0, 0),
        insn(BPF_ALU64 | BPF_ADD | BPF_K, 2, 0, 0, -8),
        insn(ld_map, 1, BPF_PSEUDO_MAP_FD, 0, r.peers_),
        insn(0, 0, 0, 0, 0),
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_map_lookup_elem),
        insn(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 7, 0),  // to SK_PASS
        insn(BPF_LDX | BPF_MEM | BPF_W, 3, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_X, 1, 6, 0, 0),
        insn(ld_map, 2, BPF_PSEUDO_MAP_FD, 0, r.socks_),
        insn(0, 0, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 4, 0, 0, 0),
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_sk_redirect_map),
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, SK_PASS),
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    };
    static char log[16384];
    a = {};
    a.prog_type = BPF_PROG_TYPE_SK_SKB;
    a.insns = reinterpret_cast<std::uintptr_t>(prog);
    a.insn_cnt = sizeof prog / sizeof prog[0];
    a.license = reinterpret_cast<std::uintptr_t>("GPL");
    a.log_buf = reinterpret_cast<std::uintptr_t>(log);
    a.log_size = sizeof log;
    a.log_level = 1;
    r.prog_ = static_cast<int>(bpf(BPF_PROG_LOAD, a));
    if (r.prog_ < 0) {
      if (errno != EPERM) why_not = std::string("the kernel refused the program: ") + std::strerror(errno) + ": " + log;
      return std::nullopt;
    }
    a = {};
    a.target_fd = static_cast<std::uint32_t>(r.socks_);
    a.attach_bpf_fd = static_cast<std::uint32_t>(r.prog_);
    a.attach_type = BPF_SK_SKB_STREAM_VERDICT;
    if (bpf(BPF_PROG_ATTACH, a) != 0) return std::nullopt;
    return r;
  }

  SockmapRelay(SockmapRelay&& o) noexcept : socks_(o.socks_), peers_(o.peers_), prog_(o.prog_) {
    o.socks_ = o.peers_ = o.prog_ = -1;
  }
  SockmapRelay& operator=(SockmapRelay&&) = delete;
  ~SockmapRelay() {
    for (const int fd : {prog_, peers_, socks_})
      if (fd >= 0) ::close(fd);
  }

  // Relays from -> to (and to -> from) until `from` reaches EOF and every byte
  // it received has been handed to `to`'s TCP.
  void run(int from, int to) {
    put(0, from, 1);
    put(1, to, 0);
    for (;;) {  // EOF on `from`: the verdict program has taken all its data
      pollfd p{from, POLLIN | POLLRDHUP, 0};
      ::poll(&p, 1, -1);
      char c;
      if (::recv(from, &c, 1, MSG_PEEK | MSG_DONTWAIT) == 0) break;
    }
    const std::uint64_t received = tcp_info(from).tcpi_bytes_received - 1;  // less the FIN
    std::uint64_t last = 0;
    auto since = std::chrono::steady_clock::now();
    for (;;) {  // the redirected skbs are sent by a kernel worker
      int outq = 0;
      ::ioctl(to, SIOCOUTQ, &outq);
      const std::uint64_t written = tcp_info(to).tcpi_bytes_acked + static_cast<std::uint64_t>(outq);
      if (written >= received) break;
      if (written != last) {
        last = written;
        since = std::chrono::steady_clock::now();
      } else if (std::chrono::steady_clock::now() - since > std::chrono::seconds(10)) {
        std::fprintf(stderr, "relay_floor: sockmap relay stalled at %llu of %llu bytes\n",
                     static_cast<unsigned long long>(written), static_cast<unsigned long long>(received));
        std::exit(1);
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    for (std::uint32_t k : {0u, 1u}) {
      bpf_attr a{};
      a.map_fd = static_cast<std::uint32_t>(socks_);
      a.key = reinterpret_cast<std::uintptr_t>(&k);
      bpf(BPF_MAP_DELETE_ELEM, a);
    }
  }

 private:
  SockmapRelay() = default;

  static struct tcp_info tcp_info(int s) {
    struct tcp_info ti {};
    socklen_t len = sizeof ti;
    ::getsockopt(s, IPPROTO_TCP, TCP_INFO, &ti, &len);
    return ti;
  }

  void put(std::uint32_t index, int fd, std::uint32_t peer) {
    std::uint64_t cookie = 0;
    socklen_t len = sizeof cookie;
    if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) != 0) die("SO_COOKIE");
    bpf_attr a{};
    a.map_fd = static_cast<std::uint32_t>(peers_);
    a.key = reinterpret_cast<std::uintptr_t>(&cookie);
    a.value = reinterpret_cast<std::uintptr_t>(&peer);
    if (bpf(BPF_MAP_UPDATE_ELEM, a) != 0) die("peer map");
    std::uint32_t value = static_cast<std::uint32_t>(fd);
    a = {};
    a.map_fd = static_cast<std::uint32_t>(socks_);
    a.key = reinterpret_cast<std::uintptr_t>(&index);
    a.value = reinterpret_cast<std::uintptr_t>(&value);
    if (bpf(BPF_MAP_UPDATE_ELEM, a) != 0) die("sockmap");
  }

  int socks_ = -1, peers_ = -1, prog_ = -1;
};

struct Sample {
  double mb_s, relay_cpu_s_gib, machine_cpu_s_gib;
};

std::optional<Sample> one(const std::string& kind, const Options& opt) {
  std::optional<SockmapRelay> sockmap = kind == "sockmap" ? SockmapRelay::make() : std::nullopt;
  if (kind == "sockmap" && !sockmap) return std::nullopt;
  std::uint16_t server_port = 0, relay_port = 0;
  const int server_lis = listen_any(server_port);
  const int relay_lis = listen_any(relay_port);
  const auto t0 = std::chrono::steady_clock::now();
  const std::uint64_t busy0 = machine_busy_ticks();
  const double cpu0 = self_cpu_s();
  const pid_t server = ::fork();
  if (server == 0) serve(server_lis, opt);
  const pid_t client = ::fork();
  if (client == 0) drain(kind == "direct" ? server_port : relay_port, opt.bytes);
  if (kind != "direct") {
    const int to = ::accept4(relay_lis, nullptr, nullptr, SOCK_CLOEXEC);
    const int from = connect_to(server_port);
    if (to < 0) die("accept");
    if (kind == "copy") relay_copy(from, to);
    else if (kind == "splice") relay_splice(from, to);
    else sockmap->run(from, to);
    ::shutdown(to, SHUT_WR);
    ::close(from);
    ::close(to);
  }
  bool ok = true;
  for (const pid_t pid : {server, client}) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    ok = ok && WIFEXITED(st) && WEXITSTATUS(st) == 0;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double gib = static_cast<double>(opt.bytes) / static_cast<double>(1 << 30);
  const double ticks = static_cast<double>(machine_busy_ticks() - busy0) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  ::close(server_lis);
  ::close(relay_lis);
  if (!ok) {
    std::fprintf(stderr, "relay_floor: %s moved a wrong byte count\n", kind.c_str());
    std::exit(1);
  }
  return Sample{static_cast<double>(opt.bytes) / secs / 1e6, (self_cpu_s() - cpu0) / gib, ticks / gib};
}

// The median of one column of the samples (none: 0).
double median(const std::vector<Sample>& samples, double Sample::*column) {
  std::vector<double> v;
  for (const auto& s : samples) v.push_back(s.*column);
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty()) out.push_back(x);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--mib" && v) opt.bytes = std::strtoull(argv[++i], nullptr, 10) << 20;
    else if (a == "--rounds" && v) opt.rounds = std::max(1, std::atoi(argv[++i]));
    else if (a == "--kinds" && v) opt.kinds = split(argv[++i]);
    else if (a == "--source" && v) opt.from_file = std::string(argv[++i]) == "file";
    else {
      std::fprintf(stderr,
                   "usage: relay_floor [--mib N] [--rounds R] [--kinds direct,copy,splice,sockmap] "
                   "[--source file|memory]\n");
      return 2;
    }
  }
  if (opt.bytes == 0) opt.bytes = 1 << 20;
  char path[] = "/tmp/relay_floor.XXXXXX";
  if (opt.from_file) {
    const int fd = ::mkstemp(path);
    if (fd < 0) die("mkstemp");
    opt.file = path;
    std::vector<char> chunk(1 << 20);
    for (std::size_t i = 0; i < chunk.size(); ++i) chunk[i] = static_cast<char>(i * 7919 >> 3);
    for (std::uint64_t done = 0; done < opt.bytes; done += chunk.size())
      if (::write(fd, chunk.data(), std::min<std::uint64_t>(chunk.size(), opt.bytes - done)) < 0) die("write");
    ::fsync(fd);
    ::close(fd);
  }
  std::map<std::string, std::vector<Sample>> got;
  std::set<std::string> skipped;
  for (int r = 0; r < opt.rounds; ++r) {
    for (std::size_t k = 0; k < opt.kinds.size(); ++k) {  // each round starts with the next kind
      const std::string& kind = opt.kinds[(k + static_cast<std::size_t>(r)) % opt.kinds.size()];
      if (skipped.count(kind)) continue;
      if (auto s = one(kind, opt)) got[kind].push_back(*s);
      else skipped.insert(kind);
    }
  }
  if (opt.from_file) ::unlink(path);
  const double direct = median(got["direct"], &Sample::mb_s);
  std::printf("%llu MiB from %s, medians of %d round(s)\n\n", static_cast<unsigned long long>(opt.bytes >> 20),
              opt.from_file ? "a file (sendfile)" : "memory (send)", opt.rounds);
  std::printf("| relay | MB/s | relay CPU s/GiB | machine CPU s/GiB |\n|---|---|---|---|\n");
  for (const auto& kind : opt.kinds) {
    if (skipped.count(kind)) {
      std::printf("| %s | skipped: %s | | |\n", kind.c_str(), SockmapRelay::why_not.c_str());
      continue;
    }
    const auto& samples = got[kind];
    if (samples.empty()) continue;
    const double mb = median(samples, &Sample::mb_s), machine = median(samples, &Sample::machine_cpu_s_gib);
    if (kind == "direct") {
      std::printf("| direct | %.0f | - | %.2f |\n", mb, machine);
      continue;
    }
    char ratio[32] = "";
    if (direct > 0) std::snprintf(ratio, sizeof ratio, " (%.2fx)", mb / direct);
    std::printf("| %s | %.0f%s | %.2f | %.2f |\n", kind.c_str(), mb, ratio, median(samples, &Sample::relay_cpu_s_gib),
                machine);
  }
  return 0;
}
