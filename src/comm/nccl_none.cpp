// The raw NCCL entry points in builds without the CUDA toolkit: they exist so
// callers compile anywhere, and say why they cannot run.
#include "mgca/comm/nccl.h"
#include "mgca/util/error.h"

namespace mgca::comm::nccl {
namespace {
[[noreturn]] void unavailable(const char* what) {
  MGCA_FAIL("{}: this build has no NCCL (CMake did not find the CUDA toolkit and NCCL)", what);
}
}  // namespace

bool compiled() { return false; }
int device_count(std::string* why) {
  if (why) *why = "built without the CUDA toolkit";
  return 0;
}
std::string device_uuid(int) { unavailable("device_uuid"); }
std::string version() { return "none"; }
std::shared_ptr<Event> record_event(Stream, int) { unavailable("record_event"); }

struct NcclComm::Impl {};
NcclComm::NcclComm(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
NcclComm::~NcclComm() = default;
std::unique_ptr<NcclComm> NcclComm::create(MPI_Comm, const Options&) { unavailable("NcclComm::create"); }
int NcclComm::rank() const { return 0; }
int NcclComm::size() const { return 1; }
int NcclComm::device() const { return -1; }
Stream NcclComm::stream() const { return nullptr; }
std::shared_ptr<Event> NcclComm::all_reduce(const void*, void*, size_t, DataType, ReduceOp, Stream) {
  unavailable("all_reduce");
}
std::shared_ptr<Event> NcclComm::all_gather(const void*, void*, size_t, DataType, Stream) {
  unavailable("all_gather");
}
std::shared_ptr<Event> NcclComm::reduce_scatter(const void*, void*, size_t, DataType, ReduceOp, Stream) {
  unavailable("reduce_scatter");
}
std::shared_ptr<Event> NcclComm::broadcast(const void*, void*, size_t, DataType, int, Stream) {
  unavailable("broadcast");
}
void NcclComm::check_async_error() {}

void set_device(int) { unavailable("set_device"); }
void* device_alloc(size_t) { unavailable("device_alloc"); }
void device_free(void*) {}
Stream create_stream() { unavailable("create_stream"); }
void destroy_stream(Stream) {}
void synchronize(Stream) { unavailable("synchronize"); }
void copy_to_device(void*, const void*, size_t, Stream) { unavailable("copy_to_device"); }
void copy_to_host(void*, const void*, size_t, Stream) { unavailable("copy_to_host"); }

}  // namespace mgca::comm::nccl
