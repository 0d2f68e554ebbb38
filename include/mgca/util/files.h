// What is wrong with a path the user gave, for error messages: a folder
// given where a file is expected is not reported as "does not exist".
#pragma once

#include <filesystem>
#include <string>

namespace mgca::util {

// "" when `path` is a regular file (or a link to one); otherwise
// "does not exist", "is a folder, not a file" or "is not a regular file".
std::string file_problem(const std::filesystem::path& path);
// "" when `path` is a folder; otherwise "does not exist" or "is a file, not a folder".
std::string folder_problem(const std::filesystem::path& path);

}  // namespace mgca::util
