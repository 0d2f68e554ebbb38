// Job files: strict TOML reading, overrides, validation, TOML writing and
// Boost.Serialization of the Config. Every key is declared once, with its
// range, in visit_fields() (the objectives' in visit_objective_options());
// parsing, range checks, writing, serialization and the key table all walk
// that one list.
//
// No torch here (toml++ and Boost add compile flags that would not match the
// shared torch precompiled header).
#include "mgca/train/config.h"
#include "mgca/train/spike_detector.h"

#include <fmt/format.h>

#include <boost/archive/text_iarchive.hpp>
#include <boost/archive/text_oarchive.hpp>
#include <boost/serialization/string.hpp>
#include <boost/serialization/vector.hpp>
#define TOML_HEADER_ONLY 0  // the shared libtomlplusplus (see CMakeLists.txt)
#define TOML_SHARED_LIB 1
#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>
#include <string_view>
#include <type_traits>

#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

using util::Range;

// Every knob, in the order of the resolved TOML: f(key, value&, doc, range).
// An enum's choices are its name table; `range` bounds a number (each
// element of an array of numbers). Each table's keys are bound by its
// module's visit_*_options; the top level and [logging] are the trainer's.
template <typename C, typename F>
void visit_fields(C& c, F&& f) {
  f("name", c.name, "run name: outputs go to `<output_dir>/<name>/`", Range{});
  f("method", c.method, "what is trained", Range{});
  f("seed", c.seed, "seed of the data order, augmentations, initial weights and dropout", Range::at_least(0));
  f("output_dir", c.output_dir, "folder holding the runs", Range{});

  model::visit_model_options(c.model, f);
  text::visit_text_options(c.text, f);
  data::visit_data_options(c.data, f);
  objectives::visit_objective_options(c.objectives, f);
  visit_optimizer_options(c.optimizer, f);
  visit_schedule_options(c.schedule, f);
  visit_runtime_options(c.runtime, f);
  comm::visit_comm_settings(c.comm, f);
  visit_checkpoint_options(c.checkpoint, f);

  auto& l = c.logging;
  f("logging.every_steps", l.every_steps, "a metrics.jsonl line every n optimizer steps", Range::at_least(1));
  f("logging.progress_interval_s", l.progress_interval_s,
    "seconds between plain progress lines when stderr is not a terminal", Range::at_least(0));
  f("logging.tensorboard", l.tensorboard,
    "TensorBoard event files of every metrics.jsonl scalar in `<output_dir>/<name>/tb/`", Range{});
  f("logging.straggler_factor", l.straggler_factor,
    "warn when one rank slows the step this many times (by its data time beyond the other ranks' median, or its "
    "step time against theirs); 0 = off, else > 1", Range::at_least(0).and_finite());
  f("logging.straggler_intervals", l.straggler_intervals,
    "logged intervals in a row a rank must be behind before the straggler warning", Range::at_least(1));
}

// Settings written in TOML as a string but held as something else: an enum
// (its name table) or checkpoint.resume.
template <typename T>
constexpr bool kTextCoded = util::has_enum_names_v<T> || std::is_same_v<T, ResumeSetting>;

template <typename T>
std::string text_of(const T& value) {
  if constexpr (std::is_same_v<T, ResumeSetting>) {
    return value.text();
  } else {
    return util::enum_name(value);
  }
}

// `text` as the value of `key`; an error naming `context` and the valid names otherwise.
template <typename T>
T value_of_text(const std::string& context, const char* key, const std::string& text) {
  if constexpr (std::is_same_v<T, ResumeSetting>) {
    MGCA_CHECK(!text.empty(), "{}: key '{}': must be auto, none or a checkpoint folder", context, key);
    return ResumeSetting::from_text(text);
  } else {
    const auto value = util::enum_from_name<T>(text);
    MGCA_CHECK(value.has_value(), "{}: key '{}': \"{}\" is not one of: {}", context, key, text,
               util::enum_choices<T>());
    return *value;
  }
}

// The names of an enum, in table order (the key table's choices).
template <typename T>
std::vector<std::string> choices_of() {
  if constexpr (util::has_enum_names_v<T>) return util::enum_name_list<T>();
  return {};
}

// ---- type names -------------------------------------------------------------

template <typename T>
const char* type_name() {
  if constexpr (kTextCoded<T>) return "string";
  if constexpr (std::is_same_v<T, bool>) return "boolean";
  if constexpr (std::is_same_v<T, int64_t>) return "integer";
  if constexpr (std::is_same_v<T, double>) return "float";
  if constexpr (std::is_same_v<T, std::string>) return "string";
  if constexpr (std::is_same_v<T, std::vector<double>>) return "array of floats";
  if constexpr (std::is_same_v<T, std::vector<std::string>>) return "array of strings";
}

std::string node_type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table: return "table";
    case toml::node_type::array: return "array";
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

// ---- TOML values ------------------------------------------------------------

// "an integer", "a string".
std::string with_article(const std::string& noun) {
  const bool vowel = !noun.empty() && std::string("aeiou").find(noun[0]) != std::string::npos;
  return (vowel ? "an " : "a ") + noun;
}


std::string format_double(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  std::string text = fmt::format("{}", value);  // shortest text that reads back exactly
  if (text.find_first_of(".eE") == std::string::npos) text += ".0";
  return text;
}

std::string format_string(const std::string& value) {
  std::ostringstream out;
  out << toml::value<std::string>(value);
  return out.str();
}

// True when `text` is written and read back unchanged as a TOML string
// (false for invalid UTF-8, which the writer would replace).
bool is_toml_string(const std::string& text) {
  try {
    const toml::table table = toml::parse("value = " + format_string(text));
    return table["value"].value<std::string>() == text;
  } catch (const toml::parse_error&) {
    return false;
  }
}

template <typename T>
std::string format_value(const T& value) {
  if constexpr (std::is_same_v<T, bool>) {
    return value ? "true" : "false";
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return std::to_string(value);
  } else if constexpr (std::is_same_v<T, double>) {
    return format_double(value);
  } else if constexpr (std::is_same_v<T, std::string>) {
    return format_string(value);
  } else if constexpr (kTextCoded<T>) {
    return format_string(text_of(value));
  } else {
    std::string text = "[";
    for (size_t i = 0; i < value.size(); ++i) {
      if (i > 0) text += ", ";
      text += format_value(value[i]);
    }
    return text + "]";
  }
}

// Reads `node` into `out`; returns false when the node has the wrong type
// (`detail` then says what was found).
template <typename T>
bool read_node(const toml::node& node, T& out, std::string& detail) {
  detail = with_article(node_type_name(node));
  if constexpr (std::is_same_v<T, bool>) {
    if (!node.is_boolean()) return false;
    out = node.as_boolean()->get();
  } else if constexpr (std::is_same_v<T, int64_t>) {
    if (!node.is_integer()) return false;
    out = node.as_integer()->get();
  } else if constexpr (std::is_same_v<T, double>) {
    if (node.is_integer()) {
      out = static_cast<double>(node.as_integer()->get());
    } else if (node.is_floating_point()) {
      out = node.as_floating_point()->get();
    } else {
      return false;
    }
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!node.is_string()) return false;
    out = node.as_string()->get();
  } else {
    using Element = typename T::value_type;
    if (!node.is_array()) return false;
    T values;
    size_t index = 0;
    for (const toml::node& element : *node.as_array()) {
      Element value{};
      std::string element_detail;
      if (!read_node(element, value, element_detail)) {
        detail = fmt::format("an array whose element {} is {}", index, element_detail);
        return false;
      }
      values.push_back(std::move(value));
      ++index;
    }
    out = std::move(values);
  }
  return true;
}

std::string where(const std::string& source, const toml::source_region& region) {
  if (region.begin.line == 0) return source;
  return fmt::format("{}:{}:{}", source, region.begin.line, region.begin.column);
}

std::string where(const std::string& source, const toml::node& node) { return where(source, node.source()); }

// An unknown key is reported where the key is written, not its value.
std::string where(const std::string& source, const toml::key& key, const toml::node& value) {
  return key.source().begin.line != 0 ? where(source, key.source()) : where(source, value);
}

std::string join(const std::vector<std::string>& items) {
  std::string text;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i > 0) text += ", ";
    text += items[i];
  }
  return text;
}

// ---- the key table ----------------------------------------------------------

struct KeyTable {
  std::vector<std::string> top_level_keys;  // name, method, ...
  std::vector<std::string> sections;        // model, text, ...
  std::map<std::string, std::vector<std::string>> section_keys;  // model → image_encoder, ...
  std::set<std::string> all;                                      // dotted
};

const KeyTable& key_table() {
  static const KeyTable table = [] {
    KeyTable t;
    Config c;
    visit_fields(c, [&](const char* key, auto&, const char*, const Range&) {
      const std::string k = key;
      t.all.insert(k);
      const auto dot = k.find('.');
      if (dot == std::string::npos) {
        t.top_level_keys.push_back(k);
        return;
      }
      const std::string section = k.substr(0, dot);
      if (t.section_keys.find(section) == t.section_keys.end()) t.sections.push_back(section);
      t.section_keys[section].push_back(k.substr(dot + 1));
    });
    return t;
  }();
  return table;
}

// Rejects unknown tables and keys, naming the valid ones.
void check_structure(const toml::table& root, const std::string& source) {
  const KeyTable& table = key_table();
  for (const auto& [raw_key, node] : root) {
    const std::string key(raw_key.str());
    const auto section = table.section_keys.find(key);
    if (section == table.section_keys.end()) {
      if (std::find(table.top_level_keys.begin(), table.top_level_keys.end(), key) !=
          table.top_level_keys.end()) {
        continue;
      }
      MGCA_FAIL("{}: unknown key '{}' at the top level; valid keys: {}; valid tables: {}",
                where(source, raw_key, node), key, join(table.top_level_keys), join(table.sections));
    }
    MGCA_CHECK(node.is_table(), "{}: '{}' must be a table ([{}]), found {}", where(source, node), key, key,
               with_article(node_type_name(node)));
    for (const auto& [raw_inner, inner] : *node.as_table()) {
      const std::string name(raw_inner.str());
      const auto& valid = section->second;
      MGCA_CHECK(std::find(valid.begin(), valid.end(), name) != valid.end(),
                 "{}: unknown key '{}' in table [{}]; valid keys of [{}]: {}", where(source, raw_inner, inner), name, key,
                 key, join(valid));
    }
  }
}

const toml::node* find_node(const toml::table& root, const std::string& key) {
  const auto dot = key.find('.');
  if (dot == std::string::npos) return root.get(key);
  const toml::node* section = root.get(key.substr(0, dot));
  if (section == nullptr || !section->is_table()) return nullptr;
  return section->as_table()->get(key.substr(dot + 1));
}

// Reads `node` as the value of `key` ("where" names it in errors).
template <typename T>
void read_value(const std::string& where_text, const char* key, const toml::node& node, T& out) {
  using Read = std::conditional_t<kTextCoded<T>, std::string, T>;
  Read read{};
  std::string found;
  if (!read_node(node, read, found)) {
    MGCA_FAIL("{}: key '{}': expected {}, found {}", where_text, key, with_article(type_name<T>()), found);
  }
  if constexpr (kTextCoded<T>) {
    out = value_of_text<T>(where_text, key, read);
  } else {
    out = std::move(read);
  }
}

// "key=value": the value is read as a TOML value; for keys written as strings
// (enums included) a value that is not a TOML string is taken literally
// (--set name=demo, --set method=convirt).
void apply_override(Config& config, const std::string& text, std::set<std::string>& explicit_keys) {
  const std::string context = fmt::format("--set {}", text);
  const auto equals = text.find('=');
  MGCA_CHECK(equals != std::string::npos && equals > 0, "{}: expected key=value", context);
  const std::string key = text.substr(0, equals);
  const std::string raw = text.substr(equals + 1);
  const KeyTable& table = key_table();
  if (table.all.count(key) == 0) {
    const auto dot = key.find('.');
    const std::string section = dot == std::string::npos ? "" : key.substr(0, dot);
    const auto found = table.section_keys.find(section);
    if (found != table.section_keys.end()) {
      MGCA_FAIL("{}: unknown key '{}'; valid keys of [{}]: {}", context, key, section, join(found->second));
    }
    std::vector<std::string> all(table.all.begin(), table.all.end());
    MGCA_FAIL("{}: unknown key '{}'; valid keys: {}", context, key, join(all));
  }
  toml::table parsed;
  bool parsed_ok = true;
  try {
    parsed = toml::parse("value = " + raw);
  } catch (const toml::parse_error&) {
    parsed_ok = false;
  }
  visit_fields(config, [&](const char* field_key, auto& value, const char*, const Range&) {
    if (key != field_key) return;
    using T = std::decay_t<decltype(value)>;
    constexpr bool kString = std::is_same_v<T, std::string> || kTextCoded<T>;
    using Read = std::conditional_t<kString, std::string, T>;
    Read result{};
    std::string found;
    if (!parsed_ok || !read_node(*parsed.get("value"), result, found)) {
      if constexpr (kString) {
        // Taken literally: it must be a string TOML can hold, or the resolved
        // config.toml would not read back as this config.
        MGCA_CHECK(is_toml_string(raw), "{}: key '{}': the value is not valid UTF-8 text", context, key);
        result = raw;
      } else {
        MGCA_FAIL("{}: key '{}': expected {}, found {}", context, key, with_article(type_name<T>()),
                  parsed_ok ? found : "'" + raw + "'");
      }
    }
    if constexpr (kTextCoded<T>) {
      value = value_of_text<T>(context, field_key, result);
    } else {
      value = std::move(result);
    }
  });
  explicit_keys.insert(key);
}

// Value checks that the type alone does not give. An error names the
// --set that gave the key its value, else the job file.
void check_values(const Config& c, const std::string& source, const std::vector<std::string>& overrides) {
  auto require = [&](bool ok, const char* key, const std::string& what) {
    if (ok) return;
    std::string origin = source;
    for (const auto& text : overrides) {  // the last --set of a key wins, as in apply_override
      if (text.substr(0, text.find('=')) == key) origin = "--set " + text;
    }
    MGCA_FAIL("{}: key '{}': {}", origin, key, what);
  };
  // The range of each number key (each element of an array of numbers).
  visit_fields(c, [&](const char* key, const auto& value, const char*, const Range& range) {
    using T = std::decay_t<decltype(value)>;
    if constexpr (std::is_same_v<T, int64_t> || std::is_same_v<T, double>) {
      const std::string problem = range.problem(value);
      require(problem.empty(), key, problem);
    } else if constexpr (std::is_same_v<T, std::vector<double>>) {
      for (double element : value) {
        const std::string problem = range.problem(element);
        require(problem.empty(), key, problem);
      }
    }
  });
  // Rules that a key's range alone does not give.
  require(!c.name.empty() && c.name.find('/') == std::string::npos, "name",
          fmt::format("\"{}\" must be non-empty and contain no '/'", c.name));
  require(!c.output_dir.empty(), "output_dir", "must not be empty");
  const auto& m = c.model;
  require(m.freeze_text_layers <= m.text_layers, "model.freeze_text_layers",
          fmt::format("{} must be in [0, model.text_layers = {}]", m.freeze_text_layers, m.text_layers));
  require(!c.data.train.empty(), "data.train", "a dataset folder is required");
  require(objectives::quantile_order_problem(c.objectives).empty(), "objectives.weight_quantile_low",
          objectives::quantile_order_problem(c.objectives));
  const auto& p = c.optimizer;
  require(p.betas.size() == 2, "optimizer.betas", fmt::format("needs 2 values, got {}", p.betas.size()));
  for (const auto& pattern : p.no_decay) {
    require(!pattern.empty(), "optimizer.no_decay", "patterns must not be empty");
  }
  const double reachable = LossSpikeDetector::max_zscore(p.spike_window);
  require(p.spike_zscore < reachable, "optimizer.spike_zscore",
          fmt::format("{} can never be reached: a loss's z-score in a window of {} (optimizer.spike_window) is at "
                      "most sqrt({}) = {:.3f}",
                      p.spike_zscore, p.spike_window, p.spike_window - 1, reachable));
  require(c.logging.straggler_factor == 0 || c.logging.straggler_factor > 1, "logging.straggler_factor",
          fmt::format("{} must be 0 (off) or > 1 (a factor of the median step time)", c.logging.straggler_factor));
  require(c.schedule.min_lr <= p.lr, "schedule.min_lr",
          fmt::format("{} must be in [0, optimizer.lr = {}]", c.schedule.min_lr, p.lr));
  require(c.runtime.autocast != Autocast::BFloat16 || c.runtime.dtype == ComputeDtype::Float32, "runtime.autocast",
          fmt::format("bf16 needs runtime.dtype = \"float32\", got \"{}\"", util::enum_name(c.runtime.dtype)));
  if (c.runtime.batch_invariant) {
    require(c.runtime.autocast != Autocast::BFloat16, "runtime.batch_invariant", "needs full precision (runtime.autocast = bf16 is on)");
    require(c.comm.gradients.wire_dtype == comm::GradDtype::Native, "runtime.batch_invariant",
            "needs comm.grad_dtype = native (bf16 rounds the per-rank sums)");
    require(c.objectives.negatives == objectives::Scope::Global && c.objectives.sinkhorn == objectives::Scope::Global,
            "runtime.batch_invariant", "needs objectives.negatives = global and objectives.sinkhorn = global");
    require(c.model.batchnorm == model::BatchNormMode::Sync, "runtime.batch_invariant",
            "needs model.batchnorm = sync (per-rank statistics depend on W)");
  }
  // Combinations.
  const bool vit = model::is_vit(m.image_encoder);
  if (c.method == Method::Convirt) {
    require(!vit, "model.image_encoder",
            fmt::format("ConVIRT uses a ResNet image encoder, not \"{}\"", util::enum_name(m.image_encoder)));
  }
  if (vit) {
    const int64_t native = model::vit_preset(m.image_encoder).image_size;
    require(m.image_size == native, "model.image_size",
            fmt::format("{} must equal the ViT's image size {} for {}", m.image_size, native,
                        util::enum_name(m.image_encoder)));
  }
}

}  // namespace

// The two keywords of checkpoint.resume; any other text is a folder.
constexpr util::NamedValue<ResumeMode> kResumeKeywords[] = {{ResumeMode::Auto, "auto"}, {ResumeMode::None, "none"}};

std::string ResumeSetting::text() const {
  for (const auto& keyword : kResumeKeywords) {
    if (keyword.value == mode) return keyword.name;
  }
  return folder;
}

ResumeSetting ResumeSetting::from_text(const std::string& text) {
  MGCA_CHECK(!text.empty(), "checkpoint.resume must be auto, none or a checkpoint folder");
  for (const auto& keyword : kResumeKeywords) {
    if (text == keyword.name) return {keyword.value, ""};
  }
  return from_folder(text);
}

fs::path Config::run_dir() const { return fs::path(output_dir) / name; }

fs::path Config::checkpoint_dir() const {
  return checkpoint.dir.empty() ? run_dir() / "checkpoints" : fs::path(checkpoint.dir);
}

std::vector<ConfigKey> config_keys() {
  std::vector<ConfigKey> keys;
  Config defaults;
  visit_fields(defaults, [&](const char* key, auto& value, const char* doc, const Range& range) {
    using T = std::decay_t<decltype(value)>;
    keys.push_back(ConfigKey{key, type_name<T>(), format_value(value), choices_of<T>(), range, doc});
  });
  return keys;
}

std::string config_keys_markdown() {
  std::string text = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& key : config_keys()) {
    std::string meaning = key.doc;
    if (!key.choices.empty()) meaning += " (" + join(key.choices) + ")";
    if (!key.range.any()) meaning += " (" + key.range.text() + ")";
    std::string value = key.default_value;
    // Keep the table readable: '|' inside a cell must be escaped.
    for (std::string* cell : {&meaning, &value}) {
      size_t at = 0;
      while ((at = cell->find('|', at)) != std::string::npos) {
        cell->replace(at, 1, "\\|");
        at += 2;
      }
    }
    text += fmt::format("| `{}` | {} | `{}` | {} |\n", key.key, key.type, value, meaning);
  }
  return text;
}

Config parse_config(const std::string& toml_text, const std::string& source,
                    const std::vector<std::string>& overrides) {
  toml::table root;
  try {
    root = toml::parse(toml_text, source);
  } catch (const toml::parse_error& error) {
    const auto& begin = error.source().begin;
    MGCA_FAIL("{}:{}:{}: not valid TOML: {}", source, begin.line, begin.column, error.description());
  }
  check_structure(root, source);

  Config config;
  std::set<std::string> explicit_keys;
  visit_fields(config, [&](const char* key, auto& value, const char*, const Range&) {
    const toml::node* node = find_node(root, key);
    if (node == nullptr) return;
    read_value(where(source, *node), key, *node, value);
    explicit_keys.insert(key);
  });
  for (const auto& text : overrides) apply_override(config, text, explicit_keys);

  // Defaults that follow other keys: a key not given takes its value from
  // the defaults as the given ones set them (the objectives' booleans follow
  // objectives.variant by ObjectiveOptions::set_variant).
  Config preset;
  preset.objectives.set_variant(config.objectives.variant);
  visit_fields(config, [&](const char* key, auto& value, const char*, const Range&) {
    if (explicit_keys.count(key) != 0) return;
    visit_fields(preset, [&](const char* preset_key, const auto& preset_value, const char*, const Range&) {
      if constexpr (std::is_same_v<std::decay_t<decltype(value)>, std::decay_t<decltype(preset_value)>>) {
        if (std::string_view(key) == preset_key) value = preset_value;
      }
    });
  });
  check_values(config, source, overrides);
  return config;
}

std::vector<std::string> resume_changes(const Config& before, int world_before, const Config& after,
                                        int world_after) {
  using objectives::Scope;
  const int64_t b0 = before.data.batch_size, b1 = after.data.batch_size;
  const int64_t n0 = world_before * b0, n1 = world_after * b1;  // samples per micro-step
  const int64_t s0 = n0 * before.optimizer.accumulate, s1 = n1 * after.optimizer.accumulate;  // per step
  std::vector<std::string> changes;
  if (n0 != n1) {
    const std::string sizes = fmt::format("{} instead of {} samples", n1, n0);
    if (after.objectives.negatives == Scope::Global) {
      changes.push_back(fmt::format("the ITA/ConVIRT negative pool ({})", sizes));
    }
    if (after.objectives.sinkhorn == Scope::Global) {
      changes.push_back(fmt::format("the Sinkhorn normalization ({})", sizes));
    }
    if (after.model.batchnorm == model::BatchNormMode::Sync) {
      changes.push_back(fmt::format("the BatchNorm statistics ({})", sizes));
    }
  }
  if (b0 != b1) {
    const std::string sizes = fmt::format("{} instead of {} rows per rank", b1, b0);
    if (after.objectives.negatives == Scope::Local) {
      changes.push_back(fmt::format("the per-rank negatives of objectives.negatives = \"local\" ({})", sizes));
    }
    if (after.objectives.sinkhorn == Scope::Local) {
      changes.push_back(fmt::format("the per-rank Sinkhorn of objectives.sinkhorn = \"local\" ({})", sizes));
    }
    if (after.model.batchnorm == model::BatchNormMode::PerRank) {
      changes.push_back(fmt::format("the BatchNorm statistics of model.batchnorm = \"per_rank\" ({})", sizes));
    }
  }
  if (s0 != s1) {
    changes.push_back(fmt::format(
        "the samples per optimizer step ({} instead of {}): the steps per epoch, the schedule's length when "
        "schedule.epochs sets it, and the data position (step k continues at micro-batch k × "
        "optimizer.accumulate of the current epoch, counted in the new size); optimizer.lr is used as given "
        "(there is no batch-size scaling rule)", s1, s0));
  }
  return changes;
}

Config load_config(const fs::path& job_file, const std::vector<std::string>& overrides, int world_size) {
  const std::string problem = util::file_problem(job_file);
  MGCA_CHECK(problem.empty(), "the job file '{}' {}", job_file.string(), problem);
  Config config = parse_config(util::read_file(job_file, "the job file"), job_file.string(), overrides);
  check_paths(config, world_size);
  return config;
}

std::string to_toml(const Config& config) {
  std::string text = "# Resolved by mgca train: every key, defaults included.\n";
  std::string current_section;
  visit_fields(config, [&](const char* key, const auto& value, const char*, const Range&) {
    const std::string k = key;
    const auto dot = k.find('.');
    const std::string section = dot == std::string::npos ? "" : k.substr(0, dot);
    if (section != current_section) {
      text += fmt::format("\n[{}]\n", section);
      current_section = section;
    }
    text += fmt::format("{} = {}\n", dot == std::string::npos ? k : k.substr(dot + 1), format_value(value));
  });
  return text;
}

namespace {
constexpr unsigned kArchiveVersion = 1;
}

std::string serialize(const Config& config) {
  std::ostringstream out;
  {
    boost::archive::text_oarchive archive(out);
    unsigned version = kArchiveVersion;
    archive << version;
    // Enums and checkpoint.resume travel as their TOML text: the archive
    // reads the same as before they were typed.
    visit_fields(config, [&](const char*, const auto& value, const char*, const Range&) {
      using T = std::decay_t<decltype(value)>;
      if constexpr (kTextCoded<T>) {
        archive << text_of(value);
      } else {
        archive << value;
      }
    });
  }
  return out.str();
}

Config deserialize(const std::string& text) {
  Config config;
  try {
    std::istringstream in(text);
    boost::archive::text_iarchive archive(in);
    unsigned version = 0;
    archive >> version;
    MGCA_CHECK(version == kArchiveVersion, "config archive version {} (expected {})", version, kArchiveVersion);
    visit_fields(config, [&](const char* key, auto& value, const char*, const Range&) {
      using T = std::decay_t<decltype(value)>;
      if constexpr (kTextCoded<T>) {
        std::string text;
        archive >> text;
        value = value_of_text<T>("the serialized config", key, text);
      } else {
        archive >> value;
      }
    });
  } catch (const boost::archive::archive_exception& error) {
    MGCA_FAIL("cannot read the serialized config: {}", error.what());
  }
  return config;
}

bool operator==(const Config& a, const Config& b) { return serialize(a) == serialize(b); }

}  // namespace mgca::train
