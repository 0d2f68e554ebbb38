#include "flight_recorder.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "mgca/util/error.h"

namespace mgca::comm::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kRingSize = 64;     // collectives kept per rank
constexpr int kMaxChannels = 16;  // channels a report carries (the newest ones)
constexpr int kShownEntries = 8;  // of the ring, in the timeout message
constexpr int kRequestTag = 7101;
constexpr int kReplyTag = 7102;

struct Entry {
  bool used = false;
  int channel = -1;
  int64_t seq = 0;
  CollectiveRecord record;
  Clock::time_point start, end;
  bool finished = false;
};

struct Channel {
  int64_t last_seq = 0;  // the last collective started on this channel
  Entry last;
};

// Fixed-size, so it travels as MPI_BYTE between watchdog threads.
struct ChannelReport {
  int32_t channel = -1;
  int32_t in_flight = 0;
  int64_t seq = 0;
  double age_s = 0;  // since its start (in flight) or since it finished
  char what[112] = {};
};
struct RankReport {
  int32_t rank = -1;
  int32_t count = 0;
  ChannelReport channels[kMaxChannels];
};

struct Recorder {
  std::mutex mutex;
  std::array<Entry, kRingSize> ring;
  int64_t recorded = 0;  // entries ever written (ring index = recorded % size)
  std::vector<Channel> channels;
  MPI_Comm watch_comm = MPI_COMM_NULL;
  int rank = 0, size = 1;
  // Replies in flight (their buffers must live until the send completes).
  std::deque<std::pair<MPI_Request, std::unique_ptr<RankReport>>> sends;
};

Recorder& recorder() {
  static Recorder* instance = new Recorder();  // never destroyed: used by the watchdog until exit
  return *instance;
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

RankReport snapshot(Recorder& rec) {
  RankReport report;
  report.rank = rec.rank;
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(rec.mutex);
  const int total = static_cast<int>(rec.channels.size());
  for (int c = std::max(0, total - kMaxChannels); c < total; ++c) {
    const Channel& channel = rec.channels[static_cast<size_t>(c)];
    if (channel.last_seq == 0) continue;
    ChannelReport& out = report.channels[report.count++];
    out.channel = c;
    out.seq = channel.last_seq;
    out.in_flight = channel.last.finished ? 0 : 1;
    out.age_s = seconds_between(channel.last.finished ? channel.last.end : channel.last.start, now);
    std::snprintf(out.what, sizeof(out.what), "%s", describe_record(channel.last.record).c_str());
  }
  return report;
}

const ChannelReport* find_channel(const RankReport& report, int channel) {
  for (int i = 0; i < report.count; ++i) {
    if (report.channels[i].channel == channel) return &report.channels[i];
  }
  return nullptr;
}

std::string state_text(const ChannelReport& c) {
  return c.in_flight ? fmt::format("#{} {}, waiting for {:.1f} s", c.seq, c.what, c.age_s)
                     : fmt::format("#{} {}, finished {:.1f} s ago", c.seq, c.what, c.age_s);
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string text = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) text += fmt::format("{}{}", i ? ", " : "", ranks[i]);
  return text;
}

// Every rank's report (this one's included); nullopt for ranks that did not
// answer within `wait_seconds`.
std::vector<std::optional<RankReport>> gather_reports(Recorder& rec, double wait_seconds) {
  std::vector<std::optional<RankReport>> reports(static_cast<size_t>(rec.size));
  reports[static_cast<size_t>(rec.rank)] = snapshot(rec);
  if (rec.size == 1 || rec.watch_comm == MPI_COMM_NULL) return reports;
  // Never freed: requests a dead rank never answers stay posted until the abort.
  auto& buffers = *new std::vector<RankReport>(static_cast<size_t>(rec.size));
  auto& receives = *new std::vector<MPI_Request>(static_cast<size_t>(rec.size), MPI_REQUEST_NULL);
  auto& requests = *new std::vector<MPI_Request>(static_cast<size_t>(rec.size), MPI_REQUEST_NULL);
  static int32_t me = 0;
  me = rec.rank;
  for (int r = 0; r < rec.size; ++r) {
    if (r == rec.rank) continue;
    MPI_Irecv(&buffers[static_cast<size_t>(r)], sizeof(RankReport), MPI_BYTE, r, kReplyTag, rec.watch_comm,
              &receives[static_cast<size_t>(r)]);
    MPI_Isend(&me, 1, MPI_INT32_T, r, kRequestTag, rec.watch_comm, &requests[static_cast<size_t>(r)]);
  }
  const auto deadline = Clock::now() + std::chrono::duration<double>(wait_seconds);
  int pending = rec.size - 1;
  while (pending > 0 && Clock::now() < deadline) {
    flight_serve_requests();  // another waiting rank may be asking us at the same time
    for (int r = 0; r < rec.size; ++r) {
      MPI_Request& request = receives[static_cast<size_t>(r)];
      if (request == MPI_REQUEST_NULL) continue;
      int done = 0;
      MPI_Test(&request, &done, MPI_STATUS_IGNORE);
      if (!done) continue;
      reports[static_cast<size_t>(r)] = buffers[static_cast<size_t>(r)];
      --pending;
    }
    if (pending > 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Unanswered requests are left behind: the job is aborted right after.
  return reports;
}

}  // namespace

std::string describe_record(const CollectiveRecord& r) {
  std::string text = r.op;
  if (r.dtype[0] != '\0') text += fmt::format(" {}{}", r.device ? "cuda " : "", r.dtype);
  if (r.ndim >= 0) {
    text += " [";
    for (int d = 0; d < r.ndim && d < static_cast<int>(r.dims.size()); ++d) {
      text += fmt::format("{}{}", d ? ", " : "", r.dims[static_cast<size_t>(d)]);
    }
    text += "]";
  }
  if (r.reduce[0] != '\0') text += fmt::format(" {}", r.reduce);
  if (r.root >= 0) text += fmt::format(" from rank {}", r.root);
  if (r.bytes >= 0) text += fmt::format(", {} B", r.bytes);
  return text;
}

int new_channel() {
  Recorder& rec = recorder();
  std::lock_guard<std::mutex> lock(rec.mutex);
  rec.channels.emplace_back();
  return static_cast<int>(rec.channels.size()) - 1;
}

FlightScope::FlightScope(int channel, const CollectiveRecord& record) : channel_(channel) {
  Recorder& rec = recorder();
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(rec.mutex);
  Channel& state = rec.channels.at(static_cast<size_t>(channel));
  seq_ = ++state.last_seq;
  Entry entry;
  entry.used = true;
  entry.channel = channel;
  entry.seq = seq_;
  entry.record = record;
  entry.start = now;
  state.last = entry;
  rec.ring[static_cast<size_t>(rec.recorded % kRingSize)] = entry;
  ++rec.recorded;
}

FlightScope::~FlightScope() {
  Recorder& rec = recorder();
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(rec.mutex);
  Channel& state = rec.channels[static_cast<size_t>(channel_)];
  if (state.last_seq == seq_) {
    state.last.finished = true;
    state.last.end = now;
  }
  for (Entry& entry : rec.ring) {
    if (entry.used && entry.channel == channel_ && entry.seq == seq_) {
      entry.finished = true;
      entry.end = now;
      break;
    }
  }
}

void flight_attach(MPI_Comm watch_comm) {
  Recorder& rec = recorder();
  rec.watch_comm = watch_comm;
  MPI_Comm_rank(watch_comm, &rec.rank);
  MPI_Comm_size(watch_comm, &rec.size);
}

void flight_detach() {
  Recorder& rec = recorder();
  for (auto& [request, buffer] : rec.sends) MPI_Request_free(&request);
  rec.sends.clear();
  rec.watch_comm = MPI_COMM_NULL;
}

void flight_serve_requests() {
  Recorder& rec = recorder();
  if (rec.watch_comm == MPI_COMM_NULL) return;
  while (!rec.sends.empty()) {
    int done = 0;
    MPI_Test(&rec.sends.front().first, &done, MPI_STATUS_IGNORE);
    if (!done) break;
    rec.sends.pop_front();
  }
  for (;;) {
    int flag = 0;
    MPI_Status status;
    MPI_Iprobe(MPI_ANY_SOURCE, kRequestTag, rec.watch_comm, &flag, &status);
    if (!flag) return;
    int32_t from = -1;
    MPI_Recv(&from, 1, MPI_INT32_T, status.MPI_SOURCE, kRequestTag, rec.watch_comm, MPI_STATUS_IGNORE);
    auto report = std::make_unique<RankReport>(snapshot(rec));
    MPI_Request request = MPI_REQUEST_NULL;
    MPI_Isend(report.get(), sizeof(RankReport), MPI_BYTE, status.MPI_SOURCE, kReplyTag, rec.watch_comm, &request);
    rec.sends.emplace_back(request, std::move(report));
  }
}

std::string flight_diagnosis(double wait_seconds) {
  Recorder& rec = recorder();
  const auto reports = gather_reports(rec, wait_seconds);
  const RankReport& mine = *reports[static_cast<size_t>(rec.rank)];
  if (mine.count == 0) return {};

  // The collective this rank waits in longest; without one (a device
  // collective that never finished on its stream), every channel where the
  // ranks stand at different collectives.
  std::vector<const ChannelReport*> focus;
  const ChannelReport* waiting = nullptr;
  for (int i = 0; i < mine.count; ++i) {
    const ChannelReport& c = mine.channels[i];
    if (c.in_flight && (!waiting || c.age_s > waiting->age_s)) waiting = &c;
  }
  if (waiting) {
    focus.push_back(waiting);
  } else {
    for (int i = 0; i < mine.count; ++i) focus.push_back(&mine.channels[i]);
  }

  std::string text;
  for (const ChannelReport* here : focus) {
    std::vector<int> same, silent;
    std::vector<std::string> others;
    for (int r = 0; r < rec.size; ++r) {
      const auto& report = reports[static_cast<size_t>(r)];
      if (!report) {
        silent.push_back(r);
        continue;
      }
      const ChannelReport* there = find_channel(*report, here->channel);
      if (there && there->seq == here->seq && there->in_flight == here->in_flight &&
          std::strcmp(there->what, here->what) == 0) {
        same.push_back(r);
      } else if (!there) {
        others.push_back(fmt::format("rank {} has not called it (no collective on this channel yet)", r));
      } else if (there->seq < here->seq) {
        others.push_back(fmt::format("rank {} has not called it (its last there: {})", r, state_text(*there)));
      } else if (there->seq > here->seq) {
        others.push_back(fmt::format("rank {} is past it, at {}", r, state_text(*there)));
      } else if (std::strcmp(there->what, here->what) != 0) {
        others.push_back(fmt::format("rank {} calls a different collective there: {}", r, state_text(*there)));
      } else {
        others.push_back(fmt::format("rank {} {} it", r, there->in_flight ? "waits in" : "finished"));
      }
    }
    if (!waiting && others.empty() && silent.empty()) continue;  // the ranks agree on this channel
    text += fmt::format("\n  flight recorder, channel {}: collective #{} {}: {} {}", here->channel, here->seq,
                        here->what, rank_list(same),
                        !here->in_flight ? "finished it" : same.size() == 1 ? "waits in it" : "wait in it");
    for (const auto& other : others) text += "; " + other;
    if (!silent.empty()) {
      text += fmt::format("; {} did not answer within {:g} s (dead, or its process is stopped)", rank_list(silent),
                          wait_seconds);
    }
  }

  std::lock_guard<std::mutex> lock(rec.mutex);
  const auto now = Clock::now();
  text += fmt::format("\n  [rank {}] last collectives (channel #seq, oldest first):", rec.rank);
  const int64_t first = std::max<int64_t>(0, rec.recorded - kShownEntries);
  for (int64_t i = first; i < rec.recorded; ++i) {
    const Entry& e = rec.ring[static_cast<size_t>(i % kRingSize)];
    text += fmt::format("\n    {} #{} {}: started {:.1f} s ago, {}", e.channel, e.seq, describe_record(e.record),
                        seconds_between(e.start, now),
                        e.finished ? fmt::format("took {:.3f} s", seconds_between(e.start, e.end)) : "not finished");
  }
  return text;
}

}  // namespace mgca::comm::detail
