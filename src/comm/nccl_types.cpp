// Data-type facts of the raw NCCL interface (every build).
#include "mgca/comm/nccl.h"

namespace mgca::comm::nccl {

size_t element_size(DataType type) {
  switch (type) {
    case DataType::Float64:
    case DataType::Int64: return 8;
    case DataType::Float32:
    case DataType::Int32: return 4;
    case DataType::Float16:
    case DataType::BFloat16: return 2;
    case DataType::Int8:
    case DataType::UInt8:
    case DataType::Bool: return 1;
  }
  return 0;
}

const char* data_type_name(DataType type) {
  switch (type) {
    case DataType::Float32: return "float32";
    case DataType::Float64: return "float64";
    case DataType::Float16: return "float16";
    case DataType::BFloat16: return "bfloat16";
    case DataType::Int64: return "int64";
    case DataType::Int32: return "int32";
    case DataType::Int8: return "int8";
    case DataType::UInt8: return "uint8";
    case DataType::Bool: return "bool";
  }
  return "?";
}

}  // namespace mgca::comm::nccl
