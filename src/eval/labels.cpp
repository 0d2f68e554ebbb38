#include <fmt/ranges.h>
#include "mgca/eval/labels.h"

#include <cmath>

#include "mgca/io/dataset_file.h"
#include "mgca/util/error.h"

namespace mgca::eval {

const std::vector<std::string>& chexpert_competition_labels() {
  static const std::vector<std::string> labels = {"Atelectasis", "Cardiomegaly", "Consolidation",
                                                  "Edema", "Pleural Effusion"};
  return labels;
}

double chexpert_mgca_uncertain_value(const std::string& label) {
  if (label == "Atelectasis" || label == "Edema" || label == "Pleural Effusion") return 1.0;
  if (label == "Cardiomegaly" || label == "Consolidation") return 0.0;
  MGCA_FAIL("'{}' is not one of CheXpert's 5 competition labels (Atelectasis, Cardiomegaly, "
            "Consolidation, Edema, Pleural Effusion)",
            label);
}

LabelPolicy parse_label_policy(const std::string& name) {
  if (name == "ignore") return LabelPolicy::Ignore;
  if (name == "chexpert-mgca") return LabelPolicy::ChexpertMgca;
  if (name == "multiclass") return LabelPolicy::MultiClass;
  MGCA_FAIL("unknown label policy '{}'; valid: ignore, chexpert-mgca, multiclass", name);
}

std::string label_policy_name(LabelPolicy policy) {
  switch (policy) {
    case LabelPolicy::Ignore: return "ignore";
    case LabelPolicy::ChexpertMgca: return "chexpert-mgca";
    case LabelPolicy::MultiClass: return "multiclass";
  }
  return "?";
}

int64_t Targets::size() const {
  return kind == TaskKind::MultiLabel ? multilabel.rows : static_cast<int64_t>(classes.size());
}

namespace {

void check_value(double v, const std::string& source, int64_t row, const std::string& name) {
  MGCA_CHECK(io::is_dataset_label(v),
             "{}: label '{}' of sample {} is {}; dataset labels must be 1, 0, -1 (uncertain) or "
             "NaN (missing)",
             source, name, row, v);
}

}  // namespace

Targets apply_label_policy(LabelPolicy policy, const Matrix& labels,
                           const std::vector<std::string>& names, const std::string& source) {
  MGCA_CHECK(static_cast<int64_t>(names.size()) == labels.cols,
             "{}: {} label names for {} label columns", source, names.size(), labels.cols);
  MGCA_CHECK(labels.cols > 0, "{}: the dataset has no labels", source);
  Targets out;
  switch (policy) {
    case LabelPolicy::Ignore: {
      out.kind = TaskKind::MultiLabel;
      out.names = names;
      out.multilabel = labels;
      for (int64_t r = 0; r < labels.rows; ++r) {
        for (int64_t c = 0; c < labels.cols; ++c) {
          double& v = out.multilabel.at(r, c);
          check_value(v, source, r, names[c]);
          if (v == -1.0) v = NAN;
        }
      }
      break;
    }
    case LabelPolicy::ChexpertMgca: {
      out.kind = TaskKind::MultiLabel;
      out.names = chexpert_competition_labels();
      out.multilabel = Matrix(labels.rows, static_cast<int64_t>(out.names.size()));
      for (size_t k = 0; k < out.names.size(); ++k) {
        int64_t column = -1;
        for (size_t c = 0; c < names.size(); ++c) {
          if (names[c] == out.names[k]) column = static_cast<int64_t>(c);
        }
        MGCA_CHECK(column >= 0,
                   "{}: label policy chexpert-mgca needs the column '{}' but the dataset's "
                   "labels are [{}]",
                   source, out.names[k], fmt::join(names, ", "));
        const double uncertain = chexpert_mgca_uncertain_value(out.names[k]);
        for (int64_t r = 0; r < labels.rows; ++r) {
          const double v = labels.at(r, column);
          check_value(v, source, r, out.names[k]);
          out.multilabel.at(r, static_cast<int64_t>(k)) =
              std::isnan(v) ? 0.0 : (v == -1.0 ? uncertain : v);
        }
      }
      break;
    }
    case LabelPolicy::MultiClass: {
      out.kind = TaskKind::MultiClass;
      out.names = names;
      out.classes.assign(labels.rows, -1);
      for (int64_t r = 0; r < labels.rows; ++r) {
        int64_t found = -1;
        for (int64_t c = 0; c < labels.cols; ++c) {
          const double v = labels.at(r, c);
          check_value(v, source, r, names[c]);
          if (v == 1.0) {
            MGCA_CHECK(found < 0,
                       "{}: label policy multiclass needs one class per sample, but sample {} "
                       "is positive for both '{}' and '{}'",
                       source, r, names[found], names[c]);
            found = c;
          }
        }
        out.classes[r] = found;
      }
      break;
    }
  }
  return out;
}

LabelPolicy default_label_policy(const Matrix& labels, const std::vector<std::string>& names) {
  int found = 0;
  for (const auto& wanted : chexpert_competition_labels()) {
    for (const auto& name : names) found += name == wanted;
  }
  if (found == static_cast<int>(chexpert_competition_labels().size())) {
    return LabelPolicy::ChexpertMgca;
  }
  if (labels.cols < 3 || labels.rows == 0) return LabelPolicy::Ignore;
  for (int64_t r = 0; r < labels.rows; ++r) {
    int ones = 0;
    for (int64_t c = 0; c < labels.cols; ++c) {
      const double v = labels.at(r, c);
      if (v == 1.0) {
        ++ones;
      } else if (v != 0.0) {
        return LabelPolicy::Ignore;  // uncertain or missing entries: a multi-label table
      }
    }
    if (ones != 1) return LabelPolicy::Ignore;
  }
  return LabelPolicy::MultiClass;
}

Targets select_rows(const Targets& targets, const std::vector<int64_t>& rows) {
  Targets out;
  out.kind = targets.kind;
  out.names = targets.names;
  const int64_t n = targets.size();
  for (int64_t r : rows) MGCA_CHECK(r >= 0 && r < n, "row {} out of range [0, {})", r, n);
  if (targets.kind == TaskKind::MultiLabel) {
    const int64_t cols = targets.multilabel.cols;
    out.multilabel = Matrix(static_cast<int64_t>(rows.size()), cols);
    for (size_t i = 0; i < rows.size(); ++i) {
      for (int64_t c = 0; c < cols; ++c) {
        out.multilabel.at(static_cast<int64_t>(i), c) = targets.multilabel.at(rows[i], c);
      }
    }
  } else {
    out.classes.reserve(rows.size());
    for (int64_t r : rows) out.classes.push_back(targets.classes[r]);
  }
  return out;
}

Matrix stratification_matrix(const Targets& targets) {
  if (targets.kind == TaskKind::MultiLabel) {
    Matrix out = targets.multilabel;
    for (double& v : out.values) v = v == 1.0 ? 1.0 : 0.0;
    return out;
  }
  Matrix out(static_cast<int64_t>(targets.classes.size()),
             static_cast<int64_t>(targets.names.size()));
  for (size_t r = 0; r < targets.classes.size(); ++r) {
    if (targets.classes[r] >= 0) out.at(static_cast<int64_t>(r), targets.classes[r]) = 1.0;
  }
  return out;
}

}  // namespace mgca::eval
