// Job files: strict TOML reading, overrides, validation, TOML writing and
// Boost.Serialization of the Config. Every key is declared once, in
// visit_fields(); parsing, writing, serialization and the key table all walk
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
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include "mgca/train/model_builder.h"
#include "mgca/util/error.h"
#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::train {
namespace {

using Choices = std::initializer_list<const char*>;

// Every knob, in the order of the resolved TOML. f(key, value&, doc, choices).
template <typename C, typename F>
void visit_fields(C& c, F&& f) {
  f("name", c.name, "run name: outputs go to `<output_dir>/<name>/`", Choices{});
  f("method", c.method, "what is trained", Choices{"mgca", "convirt"});
  f("seed", c.seed, "seed of the data order, augmentations, initial weights and dropout", Choices{});
  f("output_dir", c.output_dir, "folder holding the runs", Choices{});

  auto& m = c.model;
  f("model.image_encoder", m.image_encoder, "image backbone (`*_tiny`: small shapes for CPU and CI)",
    Choices{"vit_b16", "vit_tiny", "resnet50", "resnet50_tiny"});
  f("model.text_encoder", m.text_encoder, "text backbone: Bio_ClinicalBERT shapes or small ones",
    Choices{"bert", "bert_tiny"});
  f("model.text_layers", m.text_layers, "BERT layers built and run (MGCA: the first 6 of 12)", Choices{});
  f("model.freeze_text_embeddings", m.freeze_text_embeddings, "no gradient for the BERT embeddings (ConVIRT)",
    Choices{});
  f("model.freeze_text_layers", m.freeze_text_layers, "the first n BERT layers get no gradient (ConVIRT: 6)",
    Choices{});
  f("model.image_size", m.image_size, "crop size given to the image encoder (ViT: its image size)", Choices{});
  f("model.resnet_input_size", m.resnet_input_size,
    "ResNet input resized to this square size (MGCA: 299); 0 = no resize", Choices{});
  f("model.embed_dim", m.embed_dim, "embedding width d (MGCA 128, ConVIRT 512)", Choices{});
  f("model.head_hidden", m.head_hidden, "hidden width of MGCA's heads and of ConVIRT's image head", Choices{});
  f("model.text_head_hidden", m.text_head_hidden, "hidden width of ConVIRT's text head", Choices{});
  f("model.num_prototypes", m.num_prototypes, "prototypes K of CPA", Choices{});
  f("model.batchnorm", m.batchnorm, "BatchNorm statistics over the global batch or each rank's own",
    Choices{"sync", "per_rank"});
  f("model.dropout", m.dropout, "BERT hidden and attention dropout", Choices{});
  f("model.image_weights", m.image_weights, "pretrained image weights (safetensors, timm/torchvision names); \"\" = random",
    Choices{});
  f("model.text_weights", m.text_weights, "pretrained BERT weights (safetensors, Hugging Face names); \"\" = random",
    Choices{});
  f("model.partial_load", m.partial_load, "allow missing or unexpected tensors in the weight files", Choices{});

  auto& t = c.text;
  f("text.vocab", t.vocab, "WordPiece vocabulary (vocab.txt)", Choices{});
  f("text.lower_case", t.lower_case, "lower-case and strip accents before WordPiece", Choices{});
  f("text.max_length", t.max_length, "tokens per report, [CLS] and [SEP] included", Choices{});

  auto& d = c.data;
  f("data.train", d.train, "dataset folder (dataset.json + shards) with reports; required", Choices{});
  f("data.batch_size", d.batch_size, "samples per rank per micro-step", Choices{});
  f("data.workers", d.workers, "loader threads per rank", Choices{});
  f("data.prefetch", d.prefetch, "batches prepared ahead of the step", Choices{});
  f("data.augment", d.augment, "augmentations (docs/contract.md §5.4); eval: centre crop, no randomness",
    Choices{"mgca", "convirt", "eval"});

  auto& o = c.objectives;
  f("objectives.variant", o.variant, "the official code's choices or the paper's (docs/contract.md §2); sets the five "
    "booleans below unless they are given", Choices{"official", "paper"});
  f("objectives.lambda_ita", o.lambda_ita, "λ1, weight of the instance-wise loss", Choices{});
  f("objectives.lambda_cta", o.lambda_cta, "λ2, weight of the token-wise loss", Choices{});
  f("objectives.lambda_cpa", o.lambda_cpa, "λ3, weight of the prototype loss", Choices{});
  f("objectives.ita_temperature", o.ita_temperature, "τ1 (ITA)", Choices{});
  f("objectives.local_temperature", o.local_temperature, "τ2 (CTA)", Choices{});
  f("objectives.proto_temperature", o.proto_temperature, "τ3 (CPA softmax)", Choices{});
  f("objectives.sinkhorn_epsilon", o.sinkhorn_epsilon, "ε of the Sinkhorn codes", Choices{});
  f("objectives.sinkhorn_iterations", o.sinkhorn_iterations, "Sinkhorn-Knopp iterations", Choices{});
  f("objectives.freeze_prototypes_epochs", o.freeze_prototypes_epochs,
    "the prototype gradient is dropped during the first n epochs", Choices{});
  f("objectives.weight_quantile_low", o.weight_quantile_low, "CTA weights are clipped to this quantile …",
    Choices{});
  f("objectives.weight_quantile_high", o.weight_quantile_high, "… and this one", Choices{});
  f("objectives.quirk_pad_words_in_softmax", o.quirk_pad_words_in_softmax,
    "docs/contract.md §2.2 (a): pad words stay in the word-loss softmax", Choices{});
  f("objectives.quirk_cls_attention_off_by_one", o.quirk_cls_attention_off_by_one,
    "docs/contract.md §2.2 (b): [CLS] attention paired off by one with the tokens", Choices{});
  f("objectives.quirk_vit_patch_output_unnormalized", o.quirk_vit_patch_output_unnormalized,
    "docs/contract.md §2.2 (c): patch→word output not normalized for ViT", Choices{});
  f("objectives.ita_sum_directions", o.ita_sum_directions, "L_ITA sums both directions (false: their mean)",
    Choices{});
  f("objectives.cta_sum_parts", o.cta_sum_parts, "L_CTA = L_word + L_patch (false: their mean)", Choices{});
  f("objectives.convirt_lambda", o.convirt_lambda, "ConVIRT: λ, weight of image→text", Choices{});
  f("objectives.convirt_temperature", o.convirt_temperature, "ConVIRT: τ", Choices{});
  f("objectives.ita_tile", o.ita_tile,
    "ITA/ConVIRT: a global batch N above it runs the memory-flat loss in tiles of this many columns "
    "(same loss and gradients; the logits no longer take memory in proportion to N)", Choices{});

  auto& p = c.optimizer;
  f("optimizer.name", p.name, "adamw: decoupled weight decay; adam: L2 decay added to the gradient",
    Choices{"adamw", "adam"});
  f("optimizer.lr", p.lr, "peak learning rate", Choices{});
  f("optimizer.weight_decay", p.weight_decay, "weight decay", Choices{});
  f("optimizer.betas", p.betas, "Adam β1, β2", Choices{});
  f("optimizer.eps", p.eps, "Adam ε", Choices{});
  f("optimizer.no_decay", p.no_decay,
    "parameters whose name contains one of these get no weight decay (official MGCA: none)", Choices{});
  f("optimizer.grad_clip_norm", p.grad_clip_norm, "clip the global gradient L2 norm; 0 = off", Choices{});
  f("optimizer.accumulate", p.accumulate, "micro-steps per optimizer step (gradients sync on the last)",
    Choices{});
  f("optimizer.spike_zscore", p.spike_zscore,
    "skip the update when the loss is this many standard deviations above the mean of the last "
    "`optimizer.spike_window` losses (llm.c's detector); 0 = off",
    Choices{});
  f("optimizer.spike_window", p.spike_window, "losses the spike detector compares with (it acts once it has them)",
    Choices{});

  auto& s = c.schedule;
  f("schedule.name", s.name, "cosine: linear warm-up from min_lr, then cosine to min_lr",
    Choices{"cosine", "constant"});
  f("schedule.epochs", s.epochs, "epochs over the dataset", Choices{});
  f("schedule.max_steps", s.max_steps, "total optimizer steps (sets the schedule's length); 0 = all epochs",
    Choices{});
  f("schedule.warmup_fraction", s.warmup_fraction, "warm-up steps as a fraction of the total", Choices{});
  f("schedule.min_lr", s.min_lr, "learning rate at the start of warm-up and at the end", Choices{});
  f("schedule.stop_after_steps", s.stop_after_steps,
    "end this run after the step with a checkpoint (the schedule keeps its length); 0 = never", Choices{});

  auto& r = c.runtime;
  f("runtime.device", r.device, "auto: GPU by local rank when there is one", Choices{"auto", "cpu", "cuda"});
  f("runtime.autocast", r.autocast, "mixed precision of the forward; auto: bf16 on GPU, none on CPU; bf16: on CPU too",
    Choices{"auto", "bf16", "none"});
  f("runtime.dtype", r.dtype,
    "weights and activations; float64 is for numerical verification (slow, no autocast)",
    Choices{"float32", "float64"});
  f("runtime.threads", r.threads, "intra-op threads per rank; 0 = $OMP_NUM_THREADS, else cores / ranks on the host",
    Choices{});
  f("runtime.deterministic", r.deterministic,
    "GPU: deterministic algorithms and cuDNN, CUBLAS_WORKSPACE_CONFIG=:4096:8 (bit-exact resume; CPU runs are "
    "deterministic for a given thread count either way)",
    Choices{});
  f("runtime.check_finite", r.check_finite, "stop with the step and the loss part at a NaN/Inf", Choices{});

  auto& k = c.comm;
  f("comm.backend", k.backend,
    "device tensors: auto (NCCL when every rank has a GPU, else MPI), mpi (staged through host memory), "
    "nccl (an error where NCCL cannot be used); host tensors always go through MPI",
    Choices{"auto", "mpi", "nccl"});
  f("comm.timeout_s", k.timeout_s, "watchdog: a collective taking longer ends the job", Choices{});
  f("comm.bucket_mb", k.bucket_mb, "gradient all-reduce bucket size (MiB)", Choices{});
  f("comm.overlap", k.overlap, "launch bucket all-reduces from backward hooks", Choices{});
  f("comm.grad_dtype", k.grad_dtype,
    "what the gradient all-reduce sends: native (the gradients' dtype) or bf16 (half the bytes of float32; "
    "averaged back into float32 .grad)", Choices{"native", "bf16"});
  f("comm.validate", k.validate,
    "cross-rank shape/dtype check before each collective, naming the ranks that differ (about 0.6 µs a call)",
    Choices{});

  auto& h = c.checkpoint;
  f("checkpoint.every_steps", h.every_steps, "checkpoint every n optimizer steps; 0 = only at the end",
    Choices{});
  f("checkpoint.keep", h.keep, "newest complete checkpoints kept", Choices{});
  f("checkpoint.resume", h.resume,
    "auto: newest complete checkpoint if any; none: start fresh; or a checkpoint folder", Choices{});
  f("checkpoint.dir", h.dir, "\"\" = `<output_dir>/<name>/checkpoints`", Choices{});
  f("checkpoint.async", h.async,
    "write checkpoints in a background thread: the step loop stalls only for a copy to host memory", Choices{});

  auto& l = c.logging;
  f("logging.every_steps", l.every_steps, "a metrics.jsonl line every n optimizer steps", Choices{});
  f("logging.progress_interval_s", l.progress_interval_s,
    "seconds between plain progress lines when stderr is not a terminal", Choices{});
}

// The booleans objectives.variant sets unless they are given.
const char* variant_keys[] = {"objectives.quirk_pad_words_in_softmax", "objectives.quirk_cls_attention_off_by_one",
                              "objectives.quirk_vit_patch_output_unnormalized", "objectives.ita_sum_directions",
                              "objectives.cta_sum_parts"};

// ---- type names -------------------------------------------------------------

template <typename T>
const char* type_name() {
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
    visit_fields(c, [&](const char* key, auto&, const char*, Choices) {
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

template <typename T>
void check_choice(const std::string& context, const char* key, const T& value, Choices choices) {
  if constexpr (std::is_same_v<T, std::string>) {
    if (choices.size() == 0) return;
    for (const char* choice : choices) {
      if (value == choice) return;
    }
    std::vector<std::string> names(choices.begin(), choices.end());
    MGCA_FAIL("{}: key '{}': \"{}\" is not one of: {}", context, key, value, join(names));
  }
}

// "key=value": the value is read as a TOML value; for string keys a value
// that is not valid TOML is taken literally (--set name=demo).
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
  visit_fields(config, [&](const char* field_key, auto& value, const char*, Choices choices) {
    if (key != field_key) return;
    using T = std::decay_t<decltype(value)>;
    T result{};
    std::string found;
    if (parsed_ok && read_node(*parsed.get("value"), result, found)) {
      value = result;
    } else if constexpr (std::is_same_v<T, std::string>) {
      value = raw;
    } else {
      MGCA_FAIL("{}: key '{}': expected {}, found {}", context, key, with_article(type_name<T>()),
                parsed_ok ? found : "'" + raw + "'");
    }
    check_choice(context, field_key, value, choices);
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
  require(!c.name.empty() && c.name.find('/') == std::string::npos, "name",
          fmt::format("\"{}\" must be non-empty and contain no '/'", c.name));
  require(c.seed >= 0, "seed", fmt::format("{} must be >= 0", c.seed));
  require(!c.output_dir.empty(), "output_dir", "must not be empty");
  const auto& m = c.model;
  require(m.text_layers >= 1, "model.text_layers", fmt::format("{} must be >= 1", m.text_layers));
  require(m.freeze_text_layers >= 0 && m.freeze_text_layers <= m.text_layers, "model.freeze_text_layers",
          fmt::format("{} must be in [0, model.text_layers = {}]", m.freeze_text_layers, m.text_layers));
  require(m.image_size >= 8, "model.image_size", fmt::format("{} must be >= 8", m.image_size));
  require(m.resnet_input_size >= 0, "model.resnet_input_size",
          fmt::format("{} must be >= 0", m.resnet_input_size));
  require(m.embed_dim >= 1, "model.embed_dim", fmt::format("{} must be >= 1", m.embed_dim));
  require(m.head_hidden >= 1, "model.head_hidden", fmt::format("{} must be >= 1", m.head_hidden));
  require(m.text_head_hidden >= 1, "model.text_head_hidden", fmt::format("{} must be >= 1", m.text_head_hidden));
  require(m.num_prototypes >= 1, "model.num_prototypes", fmt::format("{} must be >= 1", m.num_prototypes));
  require(m.dropout >= 0 && m.dropout < 1, "model.dropout", fmt::format("{} must be in [0, 1)", m.dropout));
  require(c.text.max_length >= 3, "text.max_length", fmt::format("{} must be >= 3", c.text.max_length));
  const auto& d = c.data;
  require(!d.train.empty(), "data.train", "a dataset folder is required");
  require(d.batch_size >= 1, "data.batch_size", fmt::format("{} must be >= 1", d.batch_size));
  require(d.workers >= 0, "data.workers", fmt::format("{} must be >= 0", d.workers));
  require(d.prefetch >= 1, "data.prefetch", fmt::format("{} must be >= 1", d.prefetch));
  const auto& o = c.objectives;
  for (auto [key, value] : {std::pair{"objectives.lambda_ita", o.lambda_ita},
                            std::pair{"objectives.lambda_cta", o.lambda_cta},
                            std::pair{"objectives.lambda_cpa", o.lambda_cpa}}) {
    require(value >= 0 && std::isfinite(value), key, fmt::format("{} must be >= 0", value));
  }
  for (auto [key, value] : {std::pair{"objectives.ita_temperature", o.ita_temperature},
                            std::pair{"objectives.local_temperature", o.local_temperature},
                            std::pair{"objectives.proto_temperature", o.proto_temperature},
                            std::pair{"objectives.sinkhorn_epsilon", o.sinkhorn_epsilon},
                            std::pair{"objectives.convirt_temperature", o.convirt_temperature}}) {
    require(value > 0 && std::isfinite(value), key, fmt::format("{} must be > 0", value));
  }
  require(o.sinkhorn_iterations >= 1, "objectives.sinkhorn_iterations",
          fmt::format("{} must be >= 1", o.sinkhorn_iterations));
  require(o.freeze_prototypes_epochs >= 0, "objectives.freeze_prototypes_epochs",
          fmt::format("{} must be >= 0", o.freeze_prototypes_epochs));
  require(o.weight_quantile_low >= 0 && o.weight_quantile_low <= o.weight_quantile_high &&
              o.weight_quantile_high <= 1,
          "objectives.weight_quantile_low", fmt::format("need 0 <= low ({}) <= high ({}) <= 1",
                                                        o.weight_quantile_low, o.weight_quantile_high));
  require(o.convirt_lambda >= 0 && o.convirt_lambda <= 1, "objectives.convirt_lambda",
          fmt::format("{} must be in [0, 1]", o.convirt_lambda));
  require(o.ita_tile >= 1, "objectives.ita_tile", fmt::format("{} must be >= 1", o.ita_tile));
  const auto& p = c.optimizer;
  require(p.lr > 0 && std::isfinite(p.lr), "optimizer.lr", fmt::format("{} must be > 0", p.lr));
  require(p.weight_decay >= 0, "optimizer.weight_decay", fmt::format("{} must be >= 0", p.weight_decay));
  require(p.betas.size() == 2, "optimizer.betas", fmt::format("needs 2 values, got {}", p.betas.size()));
  for (double beta : p.betas) {
    require(beta >= 0 && beta < 1, "optimizer.betas", fmt::format("{} must be in [0, 1)", beta));
  }
  require(p.eps > 0, "optimizer.eps", fmt::format("{} must be > 0", p.eps));
  for (const auto& pattern : p.no_decay) {
    require(!pattern.empty(), "optimizer.no_decay", "patterns must not be empty");
  }
  require(p.spike_zscore >= 0 && std::isfinite(p.spike_zscore), "optimizer.spike_zscore",
          fmt::format("{} must be >= 0", p.spike_zscore));
  require(p.spike_window >= 2, "optimizer.spike_window", fmt::format("{} must be >= 2", p.spike_window));
  if (p.spike_window >= 2) {
    const double reachable = LossSpikeDetector::max_zscore(p.spike_window);
    require(p.spike_zscore < reachable, "optimizer.spike_zscore",
            fmt::format("{} can never be reached: a loss's z-score in a window of {} (optimizer.spike_window) is at "
                        "most sqrt({}) = {:.3f}",
                        p.spike_zscore, p.spike_window, p.spike_window - 1, reachable));
  }
  require(p.grad_clip_norm >= 0, "optimizer.grad_clip_norm", fmt::format("{} must be >= 0", p.grad_clip_norm));
  require(p.accumulate >= 1, "optimizer.accumulate", fmt::format("{} must be >= 1", p.accumulate));
  const auto& s = c.schedule;
  require(s.epochs >= 1, "schedule.epochs", fmt::format("{} must be >= 1", s.epochs));
  require(s.max_steps >= 0, "schedule.max_steps", fmt::format("{} must be >= 0", s.max_steps));
  require(s.warmup_fraction >= 0 && s.warmup_fraction <= 1, "schedule.warmup_fraction",
          fmt::format("{} must be in [0, 1]", s.warmup_fraction));
  require(s.min_lr >= 0 && s.min_lr <= p.lr, "schedule.min_lr",
          fmt::format("{} must be in [0, optimizer.lr = {}]", s.min_lr, p.lr));
  require(s.stop_after_steps >= 0, "schedule.stop_after_steps",
          fmt::format("{} must be >= 0", s.stop_after_steps));
  require(c.runtime.autocast != "bf16" || c.runtime.dtype == "float32", "runtime.autocast",
          fmt::format("bf16 needs runtime.dtype = \"float32\", got \"{}\"", c.runtime.dtype));
  require(c.runtime.threads >= 0, "runtime.threads", fmt::format("{} must be >= 0", c.runtime.threads));
  require(c.comm.timeout_s > 0, "comm.timeout_s", fmt::format("{} must be > 0", c.comm.timeout_s));
  require(c.comm.bucket_mb > 0, "comm.bucket_mb", fmt::format("{} must be > 0", c.comm.bucket_mb));
  require(c.checkpoint.every_steps >= 0, "checkpoint.every_steps",
          fmt::format("{} must be >= 0", c.checkpoint.every_steps));
  require(c.checkpoint.keep >= 1, "checkpoint.keep", fmt::format("{} must be >= 1", c.checkpoint.keep));
  require(!c.checkpoint.resume.empty(), "checkpoint.resume", "must be auto, none or a checkpoint folder");
  require(c.logging.every_steps >= 1, "logging.every_steps", fmt::format("{} must be >= 1", c.logging.every_steps));
  require(c.logging.progress_interval_s >= 0, "logging.progress_interval_s",
          fmt::format("{} must be >= 0", c.logging.progress_interval_s));
  // Combinations.
  const bool vit = is_vit(m);
  if (c.method == "convirt") {
    require(!vit, "model.image_encoder",
            fmt::format("ConVIRT uses a ResNet image encoder, not \"{}\"", m.image_encoder));
  }
  if (vit) {
    const int64_t native = vit_preset(m).image_size;
    require(m.image_size == native, "model.image_size",
            fmt::format("{} must equal the ViT's image size {} for {}", m.image_size, native, m.image_encoder));
  }
}

}  // namespace

fs::path Config::run_dir() const { return fs::path(output_dir) / name; }

fs::path Config::checkpoint_dir() const {
  return checkpoint.dir.empty() ? run_dir() / "checkpoints" : fs::path(checkpoint.dir);
}

std::vector<ConfigKey> config_keys() {
  std::vector<ConfigKey> keys;
  Config defaults;
  visit_fields(defaults, [&](const char* key, auto& value, const char* doc, Choices choices) {
    using T = std::decay_t<decltype(value)>;
    keys.push_back(ConfigKey{key, type_name<T>(), format_value(value),
                             std::vector<std::string>(choices.begin(), choices.end()), doc});
  });
  return keys;
}

std::string config_keys_markdown() {
  std::string text = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& key : config_keys()) {
    std::string meaning = key.doc;
    if (!key.choices.empty()) meaning += " (" + join(key.choices) + ")";
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
  visit_fields(config, [&](const char* key, auto& value, const char*, Choices choices) {
    const toml::node* node = find_node(root, key);
    if (node == nullptr) return;
    using T = std::decay_t<decltype(value)>;
    std::string found;
    if (!read_node(*node, value, found)) {
      MGCA_FAIL("{}: key '{}': expected {}, found {}", where(source, *node), key, with_article(type_name<T>()),
                found);
    }
    check_choice(where(source, *node), key, value, choices);
    explicit_keys.insert(key);
  });
  for (const auto& text : overrides) apply_override(config, text, explicit_keys);

  // Defaults that follow other keys.
  const bool official = config.objectives.variant == "official";
  for (const char* key : variant_keys) {
    if (explicit_keys.count(key) != 0) continue;
    visit_fields(config, [&](const char* field_key, auto& value, const char*, Choices) {
      if constexpr (std::is_same_v<std::decay_t<decltype(value)>, bool>) {
        if (std::string(field_key) == key) value = official;
      }
    });
  }
  check_values(config, source, overrides);
  return config;
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
  visit_fields(config, [&](const char* key, const auto& value, const char*, Choices) {
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
    visit_fields(config, [&](const char*, const auto& value, const char*, Choices) { archive << value; });
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
    visit_fields(config, [&](const char*, auto& value, const char*, Choices) { archive >> value; });
  } catch (const boost::archive::archive_exception& error) {
    MGCA_FAIL("cannot read the serialized config: {}", error.what());
  }
  return config;
}

bool operator==(const Config& a, const Config& b) { return serialize(a) == serialize(b); }

}  // namespace mgca::train
