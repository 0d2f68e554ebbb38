// The world communicator of a test process, one per process.
#pragma once

#include <memory>

#include "mgca/comm/communicator.h"
#include "mgca/comm/runtime.h"

namespace mgca::test {

// Every rank gets the same communicator on every call. mpi programs have
// initialized MPI in mpi_test_main.cpp; single-process programs (gpu) get an
// MPI singleton here.
inline std::shared_ptr<comm::Communicator> world() {
  if (!comm::is_initialized()) comm::init(nullptr, nullptr);
  static const auto communicator = comm::Communicator::world();
  return communicator;
}

}  // namespace mgca::test
