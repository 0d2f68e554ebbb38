#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <stdexcept>
#include <thread>
#include <string>
#include <vector>

#include "mgca/util/error.h"
#include "mgca/util/device_choice.h"
#include "mgca/util/files.h"
#include "mgca/util/host_memory.h"
#include "mgca/util/option_types.h"
#include "mgca/util/progress.h"
#include "mgca/util/rng.h"
#include "mgca/util/threads.h"
#include "support/test_support.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace mgca::util {
namespace {

// Sets (or, with nullptr, unsets) an environment variable for one scope and puts back what was there.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    const char* saved = std::getenv(name);
    had_ = saved != nullptr;
    if (had_) saved_ = saved;
    set(value);
  }
  ~ScopedEnv() { set(had_ ? saved_.c_str() : nullptr); }
  void set(const char* value) const {
    if (value) {
      ::setenv(name_, value, 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string saved_;
};

#if defined(__GLIBC__)
// After the call, blocks up to 32 MiB come from the heap and freeing them returns nothing to the kernel.
// Without it either glibc maps each 30 MiB block (its threshold starts at 128 KiB) or, once a process
// has raised its dynamic threshold to 32 MiB, it trims a freed heap top above 64 MiB: both fail below.
TEST(HostMemory, FreedBlocksUpTo32MiBStayInTheProcess) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "AddressSanitizer replaces glibc's malloc (its mallopt does nothing)";
#endif
  {
    const ScopedEnv tunables("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=0");
    EXPECT_FALSE(retain_freed_host_memory()) << "a malloc tunable in the environment should win";
  }

  ASSERT_TRUE(retain_freed_host_memory());
  const size_t mapped = mallinfo2().hblks;
  std::vector<void*> blocks;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(std::malloc(30u << 20));
    static_cast<char*>(blocks.back())[0] = 1;
  }
  EXPECT_EQ(mallinfo2().hblks, mapped) << "a 30 MiB block was mapped";
  const size_t heap = mallinfo2().arena;
  for (void* block : blocks) std::free(block);
  EXPECT_EQ(mallinfo2().arena, heap) << "freeing 120 MiB of heap gave memory back to the kernel";
}
#endif

TEST(Error, CarriesRankFileAndLine) {
  set_process_rank(3);
  try {
    MGCA_FAIL("tensor '{}' has {} dims", "x", 2);
    FAIL() << "MGCA_FAIL returned";
  } catch (const Error& error) {
    EXPECT_EQ(error.rank(), 3);
    EXPECT_EQ(error.message(), "tensor 'x' has 2 dims");
    EXPECT_TRUE(error.location().rfind("tests/unit/util/test_util.cpp:", 0) == 0) << error.location();
    EXPECT_NE(std::string(error.what()).find("[rank 3] tests/unit/util/test_util.cpp:"), std::string::npos)
        << error.what();
  }
  set_process_rank(-1);
}

TEST(Error, CheckPassesAndFails) {
  EXPECT_NO_THROW(MGCA_CHECK(1 + 1 == 2, "arithmetic"));
  EXPECT_THROW(MGCA_CHECK(1 + 1 == 3, "arithmetic {}", 3), Error);
}

TEST(Rng, SameKeySameStream) {
  Rng a(make_key({1, 2, 3}));
  Rng b(make_key({1, 2, 3}));
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.next_u64(), b.next_u64());
  Rng c(make_key({1, 2, 4}));
  EXPECT_NE(Rng(make_key({1, 2, 3})).next_u64(), c.next_u64());
}

TEST(Rng, KnownFirstValuesPinTheStream) {
  // Pinned so that a change of the generator (which would change every
  // augmentation and break resume of old runs) cannot go unnoticed.
  Rng rng(0);
  const uint64_t first = rng.next_u64();
  Rng again(0);
  EXPECT_EQ(again.next_u64(), first);
  EXPECT_EQ(mix64(0), 0xE220A8397B1DCDAFULL);
}

TEST(Rng, UniformAndRandintRanges) {
  Rng rng(42);
  double sum = 0;
  constexpr int kDraws = 200000;
  std::vector<int> counts(7, 0);
  for (int i = 0; i < kDraws; ++i) {
    const double u = rng.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    const int64_t k = rng.randint(-3, 4);
    ASSERT_GE(k, -3);
    ASSERT_LT(k, 4);
    counts[static_cast<size_t>(k + 3)]++;
  }
  EXPECT_NEAR(sum / kDraws, 0.5, 0.005);
  for (int count : counts) EXPECT_NEAR(count, kDraws / 7.0, kDraws / 7.0 * 0.03);
}

TEST(Rng, NormalMoments) {
  Rng rng(7);
  double sum = 0, sum_sq = 0;
  constexpr int kDraws = 200000;
  for (int i = 0; i < kDraws; ++i) {
    const double x = rng.normal();
    sum += x;
    sum_sq += x * x;
  }
  EXPECT_NEAR(sum / kDraws, 0.0, 0.01);
  EXPECT_NEAR(sum_sq / kDraws, 1.0, 0.02);
}

TEST(Rng, StateRoundTrip) {
  Rng rng(5);
  rng.next_u64();
  const auto saved = rng.state();
  const uint64_t expected = rng.next_u64();
  Rng other(99);
  other.set_state(saved);
  EXPECT_EQ(other.next_u64(), expected);
  EXPECT_THROW(other.set_state({0, 0, 0, 0}), Error);
}

TEST(Rng, PermutationIsAPermutationAndKeyed) {
  const auto p = permutation(1000, 11);
  std::set<int64_t> seen(p.begin(), p.end());
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(*seen.begin(), 0);
  EXPECT_EQ(*seen.rbegin(), 999);
  EXPECT_EQ(p, permutation(1000, 11));
  EXPECT_NE(p, permutation(1000, 12));
}

TEST(Files, AtomicWriteReplacesWholeAndLeavesNoTemporary) {
  test::TempDir dir("mgca-files");
  write_file_atomic(dir / "a.txt", "hello");
  write_file_atomic(dir / "a.txt", std::string("bytes\0and more", 14));
  EXPECT_EQ(read_file(dir / "a.txt"), std::string("bytes\0and more", 14));
  EXPECT_FALSE(std::filesystem::exists(dir / "a.txt.tmp"));
}

TEST(Files, ErrorsNameTheFileAndLeaveTheOldContent) {
  test::TempDir dir("mgca-files");
  try {
    write_file_atomic(dir / "no" / "such" / "b.txt", "x");
    ADD_FAILURE() << "writing into a missing folder succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot create '" + (dir / "no" / "such" / "b.txt.tmp").string() + "'"),
              std::string::npos)
        << e.what();
  }
  try {
    read_file(dir / "none.txt", "the job file");
    ADD_FAILURE() << "reading a missing file succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read the job file '" + (dir / "none.txt").string() + "'"),
              std::string::npos)
        << e.what();
  }
  // A temporary that cannot be committed (its target is a folder) is removed; the folder stays.
  std::filesystem::create_directory(dir / "taken");
  std::filesystem::create_directory(dir / "taken" / "inside");
  EXPECT_THROW(write_file_atomic(dir / "taken", "x"), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "taken.tmp"));
  EXPECT_TRUE(std::filesystem::is_directory(dir / "taken" / "inside"));
}

TEST(Hash, Fnv1aMatchesThePublishedVectors) {
  // FNV-1a 64-bit test vectors (Fowler, Noll, Vo: the empty string is the offset basis).
  EXPECT_EQ(fnv1a(""), 0xcbf29ce484222325ULL);
  EXPECT_EQ(fnv1a("a"), 0xaf63dc4c8601ec8cULL);
  EXPECT_EQ(fnv1a("foobar"), 0x85944171f73967e8ULL);
  // The integer form hashes the 8 bytes least significant first.
  const int64_t value = 0x0102030405060708LL;
  EXPECT_EQ(fnv1a(value, kFnv1aBasis), fnv1a(std::string("\x08\x07\x06\x05\x04\x03\x02\x01", 8)));
  EXPECT_EQ(fnv1a("bar", fnv1a("foo")), fnv1a("foobar"));
}

TEST(Threads, CountRule) {
  const ScopedEnv omp("OMP_NUM_THREADS", "3");
  EXPECT_EQ(choose_thread_count(5, 2), 5);  // an explicit count wins
  EXPECT_EQ(choose_thread_count(0, 2), 3);  // then the environment
  omp.set(nullptr);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(choose_thread_count(0, 1), cores);  // then the cores shared by the ranks on the host
  EXPECT_EQ(choose_thread_count(0, 4 * cores), 1);
}

TEST(Threads, ParallelForCoversEveryIndexOnceAndRethrows) {
  std::vector<std::atomic<int>> hits(1000);
  parallel_for(3, 1000, [&](int64_t k) { hits[static_cast<size_t>(k)]++; });
  EXPECT_TRUE(std::all_of(hits.begin(), hits.end(), [](const auto& h) { return h.load() == 1; }));
  EXPECT_THROW(parallel_for(2, 10,
                            [](int64_t k) {
                              if (k == 7) throw std::runtime_error("sample 7");
                            }),
               std::runtime_error);
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(Progress::format_duration(12.2), "12s");
  EXPECT_EQ(Progress::format_duration(185), "3m05s");
  EXPECT_EQ(Progress::format_duration(3720), "1h02m");
  EXPECT_EQ(Progress::format_duration(-1), "?");
}

// The name table is the one spelling of a setting: both directions agree, an
// unknown name is an error naming the setting and every valid name.
TEST(OptionTypes, EnumNamesGoBothWaysAndErrorsListTheChoices) {
  for (const auto& entry : kDeviceChoiceNames) {
    EXPECT_STREQ(enum_name(entry.value), entry.name);
    EXPECT_EQ(enum_from_name<DeviceChoice>(entry.name), entry.value);
  }
  EXPECT_EQ(enum_choices<DeviceChoice>(), "auto, cpu, cuda");
  EXPECT_FALSE(enum_from_name<DeviceChoice>("CPU").has_value());
  const std::string e = test::error_of([] { parse_enum<DeviceChoice>("gpu", "--device"); });
  EXPECT_NE(e.find("--device: unknown value 'gpu'; valid: auto, cpu, cuda"), std::string::npos) << e;
  static_assert(has_enum_names_v<DeviceChoice>);
  static_assert(!has_enum_names_v<int64_t> && !has_enum_names_v<std::string>);
}

TEST(OptionTypes, RangeBoundsAndTheirText) {
  EXPECT_EQ(Range::at_least(1).problem(int64_t{1}), "");
  EXPECT_EQ(Range::at_least(1).problem(int64_t{0}), "0 must be >= 1");
  EXPECT_EQ(Range::above(0).problem(-1.0), "-1 must be > 0");
  EXPECT_EQ(Range::above(0).problem(INFINITY), "");
  EXPECT_EQ(Range::above(0).and_finite().problem(INFINITY), "inf must be > 0");
  EXPECT_EQ(Range::above(0).problem(NAN), "nan must be > 0");
  EXPECT_EQ(Range::half_open(0, 1).problem(1.0), "1 must be in [0, 1)");
  EXPECT_EQ(Range::closed(0, 1).problem(1.0), "");
  EXPECT_EQ(Range::closed(0, 1).problem(1.5), "1.5 must be in [0, 1]");
  EXPECT_EQ(Range{}.problem(-1e300), "");
  EXPECT_TRUE(Range{}.any());
  EXPECT_EQ(Range::at_least(0).and_finite().text(), ">= 0, finite");
  EXPECT_EQ(Range::half_open(0, 1).text(), "in [0, 1)");
}

}  // namespace
}  // namespace mgca::util
