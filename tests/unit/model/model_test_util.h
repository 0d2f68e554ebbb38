// Helpers for the model tests: reference files made by make_references.py
// (the venv's Python, torch 2.11 + torchvision), cached in the build
// folder and rebuilt when the script changes.
#pragma once

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <filesystem>
#include <map>
#include <string>

#include <unistd.h>

#include "mgca/io/safetensors.h"
#include "mgca/util/error.h"
#include "support/tensor_checks.h"
#include "support/test_support.h"

namespace mgca::test {

inline std::filesystem::path model_reference(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path script = source_dir() / "tests/unit/model/make_references.py";
  const fs::path dir = binary_dir() / "tests/model_references";
  const fs::path file = dir / (name + ".safetensors");
  if (fs::exists(file) && fs::last_write_time(file) >= fs::last_write_time(script)) return file;
  fs::create_directories(dir);
  // A private temporary name: tests of one program run as parallel processes
  // and may build the same reference at once (the rename is atomic).
  const fs::path tmp = dir / (name + ".tmp" + std::to_string(::getpid()) + ".safetensors");
  const auto result = run_command(mgca::test::python() + " " + script.string() + " " + name + " " + tmp.string());
  MGCA_CHECK(result.exit_code == 0, "make_references.py {} failed ({}): {}", name, result.exit_code,
             result.output);
  fs::rename(tmp, file);
  return file;
}

// A reference file split into checkpoint tensors and "ref.*" tensors (prefix removed).
struct Reference {
  std::map<std::string, torch::Tensor> weights, ref;
  const torch::Tensor& operator[](const std::string& name) const {
    auto it = ref.find(name);
    MGCA_CHECK(it != ref.end(), "reference tensor 'ref.{}' missing", name);
    return it->second;
  }
};

inline Reference load_reference(const std::string& name) {
  Reference r;
  for (auto& [key, t] : io::load_safetensors(model_reference(name))) {
    if (key.rfind("ref.", 0) == 0) {
      r.ref[key.substr(4)] = t;
    } else {
      r.weights[key] = t;
    }
  }
  return r;
}

}  // namespace mgca::test
