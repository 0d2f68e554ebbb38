#include "mgca/comm/collective_error.h"

namespace mgca::comm::detail {

void raise_collective(const char* file, int line, bool echo, std::string message) {
  throw CollectiveError(fmt::format("{}:{}", util::source_relative(file), line), std::move(message),
                        util::process_rank(), echo);
}

}  // namespace mgca::comm::detail
