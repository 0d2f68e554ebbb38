// MGCA's report cleaning (docs/contract.md §4; the official MultimodalPretrainingDataset's
// create_path_2_sent_mapping): impression + findings, split into sentences,
// lower-cased, \w+ tokens kept as ASCII, short sentences and reports dropped.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mgca::text {

struct CleanedReport {
  std::vector<std::string> sentences;  // each: ASCII tokens joined by single spaces
  int64_t num_tokens = 0;              // tokens over all kept sentences
  bool kept = false;                   // false: fewer than 3 tokens (the report is dropped;
                                       // `sentences` still lists what was found)
};

// Cleans `impression + " " + findings` as the official code does.
CleanedReport clean_report(const std::string& impression, const std::string& findings);

// The form stored in dataset files: kept sentences joined by '\n'. An empty
// sentence or one containing '\n' is an error (it would not round-trip);
// split_sentences("") is no sentences.
std::string join_sentences(const std::vector<std::string>& sentences);
std::vector<std::string> split_sentences(const std::string& stored_report);

}  // namespace mgca::text
