#include "mgca/util/files.h"

namespace fs = std::filesystem;

namespace mgca::util {

std::string file_problem(const fs::path& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (fs::is_regular_file(status)) return "";
  if (!fs::exists(status)) return "does not exist";
  if (fs::is_directory(status)) return "is a folder, not a file";
  return "is not a regular file";
}

std::string folder_problem(const fs::path& path) {
  std::error_code error;
  const fs::file_status status = fs::status(path, error);
  if (fs::is_directory(status)) return "";
  if (!fs::exists(status)) return "does not exist";
  return "is a file, not a folder";
}

}  // namespace mgca::util
