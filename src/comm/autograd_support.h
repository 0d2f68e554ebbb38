// Keeps a communicator alive inside an autograd context (internal).
#pragma once

#include <torch/torch.h>

#include <memory>

#include "mgca/comm/communicator.h"

namespace mgca::comm::detail {

struct CommunicatorHolder : torch::CustomClassHolder {
  explicit CommunicatorHolder(std::shared_ptr<Communicator> c) : comm(std::move(c)) {}
  std::shared_ptr<Communicator> comm;
};

inline c10::IValue hold(std::shared_ptr<Communicator> comm) {
  return c10::IValue::make_capsule(c10::make_intrusive<CommunicatorHolder>(std::move(comm)));
}

inline std::shared_ptr<Communicator> held(const c10::IValue& value) {
  return static_cast<CommunicatorHolder*>(value.toCapsule().get())->comm;
}

}  // namespace mgca::comm::detail
