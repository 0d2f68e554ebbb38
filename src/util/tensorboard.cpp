#include "mgca/util/tensorboard.h"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>

#include "mgca/util/error.h"

namespace fs = std::filesystem;

namespace mgca::util {
namespace {

constexpr std::string_view kEventPrefix = "events.out.tfevents.";

std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}

// ---- protobuf wire format (only what Event needs) --------------------------

void put_varint(std::string& out, uint64_t value) {
  while (value >= 0x80) {
    out.push_back(static_cast<char>((value & 0x7F) | 0x80));
    value >>= 7;
  }
  out.push_back(static_cast<char>(value));
}

void put_key(std::string& out, int field, int wire_type) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | static_cast<uint64_t>(wire_type));
}

template <typename T>
void put_fixed(std::string& out, int field, T value) {  // wire types 1 (8 bytes) and 5 (4 bytes)
  static_assert(sizeof(T) == 8 || sizeof(T) == 4);
  put_key(out, field, sizeof(T) == 8 ? 1 : 5);
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // little-endian host (x86-64, aarch64)
  out.append(bytes, sizeof(T));
}

void put_bytes(std::string& out, int field, std::string_view bytes) {
  put_key(out, field, 2);
  put_varint(out, bytes.size());
  out.append(bytes);
}

// Event fields: wall_time 1 (double), step 2 (int64), file_version 3,
// summary 5, session_log 7.
std::string event_head(double wall_time, int64_t step) {
  std::string out;
  put_fixed(out, 1, wall_time);
  if (step != 0) {  // proto3 leaves zero out
    put_key(out, 2, 0);
    put_varint(out, static_cast<uint64_t>(step));
  }
  return out;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

uint32_t crc32c(std::string_view bytes) {
  static const std::array<uint32_t, 256> table = make_crc32c_table();
  uint32_t c = 0xFFFFFFFFu;
  for (const char ch : bytes) c = table[(c ^ static_cast<uint8_t>(ch)) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(std::string_view bytes) {
  const uint32_t c = crc32c(bytes);
  return ((c >> 15) | (c << 17)) + 0xa282ead8u;
}

std::string tfrecord(std::string_view data) {
  std::string out;
  const uint64_t length = data.size();
  char header[8];
  std::memcpy(header, &length, 8);
  out.append(header, 8);
  const uint32_t length_crc = masked_crc32c(std::string_view(header, 8));
  out.append(reinterpret_cast<const char*>(&length_crc), 4);
  out.append(data);
  const uint32_t data_crc = masked_crc32c(data);
  out.append(reinterpret_cast<const char*>(&data_crc), 4);
  return out;
}

std::string event_file_version(double wall_time) {
  std::string out = event_head(wall_time, 0);
  put_bytes(out, 3, "brain.Event:2");
  return out;
}

std::string event_scalars(double wall_time, int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
  std::string summary;
  for (const auto& [tag, value] : scalars) {
    std::string entry;  // Summary.Value: tag 1, simple_value 2 (float)
    put_bytes(entry, 1, tag);
    put_fixed(entry, 2, static_cast<float>(value));
    put_bytes(summary, 1, entry);  // Summary.value is field 1
  }
  std::string out = event_head(wall_time, step);
  put_bytes(out, 5, summary);
  return out;
}

std::string event_session_start(double wall_time, int64_t step) {
  std::string session_log;  // SessionLog.status 1: START = 1
  put_key(session_log, 1, 0);
  put_varint(session_log, 1);
  std::string out = event_head(wall_time, step);
  put_bytes(out, 7, session_log);
  return out;
}

EventWriter::EventWriter(const fs::path& folder, const std::string& host) {
  fs::create_directories(folder);
  auto seconds = static_cast<int64_t>(now_seconds());
  for (const auto& entry : fs::directory_iterator(folder)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(kEventPrefix, 0) != 0) continue;
    try {
      seconds = std::max<int64_t>(seconds, std::stoll(name.substr(kEventPrefix.size())) + 1);
    } catch (const std::exception&) {
      // not one of ours: its name does not order against ours
    }
  }
  path_ = folder / (std::string(kEventPrefix) + std::to_string(seconds) + "." + host + "." + std::to_string(getpid()));
  out_.open(path_, std::ios::binary | std::ios::trunc);
  MGCA_CHECK(out_.good(), "cannot write {}", path_.string());
  write_record(event_file_version(now_seconds()));
}

void EventWriter::write_scalars(int64_t step, const std::vector<std::pair<std::string, double>>& scalars) {
  write_record(event_scalars(now_seconds(), step, scalars));
}

void EventWriter::write_session_start(int64_t step) { write_record(event_session_start(now_seconds(), step)); }

void EventWriter::write_record(const std::string& event) {
  out_ << tfrecord(event);
  out_.flush();
  MGCA_CHECK(out_.good(), "cannot write {}", path_.string());
}

void remove_event_files(const fs::path& folder) {
  if (!fs::is_directory(folder)) return;
  for (const auto& entry : fs::directory_iterator(folder)) {
    if (entry.path().filename().string().rfind(kEventPrefix, 0) == 0) fs::remove(entry.path());
  }
}

}  // namespace mgca::util
