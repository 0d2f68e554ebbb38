// A TOML job file and its `--set key=value` overrides
// (mgca::train::parse_config): part 0 is the job, every further part one
// override. A job that parses must write back as TOML that parses to the
// same config, and survive its Boost.Serialization round trip.
#include <vector>

#include "fuzz_support.h"
#include "mgca/train/config.h"
#include "mgca/util/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto parts = mgca::fuzz::split_parts(data, size);
  const std::string job = parts[0];
  const std::vector<std::string> overrides(parts.begin() + 1, parts.end());
  mgca::train::Config config;
  try {
    config = mgca::train::parse_config(job, "fuzz.toml", overrides);
  } catch (const mgca::Error&) {
    return 0;
  }
  // Past this point the job was accepted: its written forms must read back.
  const std::string toml = mgca::train::to_toml(config);
  const std::string again = mgca::train::to_toml(mgca::train::parse_config(toml, "fuzz-resolved.toml"));
  if (again != toml) __builtin_trap();
  if (mgca::train::to_toml(mgca::train::deserialize(mgca::train::serialize(config))) != toml) __builtin_trap();
  return 0;
}
