// Whole-file reads, durable writes and what is wrong with a path: the one
// implementation every module uses. Local to the calling rank (no collectives).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

namespace mgca::util {

// "" when `path` is a regular file (or a link to one); otherwise
// "does not exist", "is a folder, not a file" or "is not a regular file".
// A folder given where a file is expected is not reported as "does not exist".
std::string file_problem(const std::filesystem::path& path);
// "" when `path` is a folder; otherwise "does not exist" or "is a file, not a folder".
std::string folder_problem(const std::filesystem::path& path);

// The whole file as bytes; an error names the file (as `what`, e.g. "the job
// file") and the system's reason.
std::string read_file(const std::filesystem::path& path, std::string_view what = "file");

// Writes `bytes` to "<path>.tmp", fsyncs it, renames it over `path` and
// fsyncs the folder: `path` holds either its old content or all of `bytes`,
// also after a crash. On failure the temporary file is removed.
void write_file_atomic(const std::filesystem::path& path, std::string_view bytes);

// The last steps of write_file_atomic for a temporary file its caller wrote
// itself (HDF5, a streamed safetensors file): fsync `temp`, rename it over
// `path`, fsync the folder. On failure `temp` is removed.
void commit_file(const std::filesystem::path& temp, const std::filesystem::path& path);

// fsync of a file or a folder (a folder makes renames inside it durable).
void fsync_path(const std::filesystem::path& path);

}  // namespace mgca::util
