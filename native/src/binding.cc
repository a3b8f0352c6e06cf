// bkp_native: mechanical wrappers around the syscalls bkp needs (block-device ioctls, fallocate,
// FIEMAP, and one generic ioctl for blksnap). Arguments are checked, the call is made, errno
// becomes an Error shaped like Node's fs errors (code, errno, syscall). All decisions — struct
// layouts included — live in TypeScript (src/native, src/blksnap).
#include <napi.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <fcntl.h>
#include <linux/fiemap.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <unistd.h>

namespace {

Napi::Error ErrnoError(Napi::Env env, int err, const char* syscall) {
  const char* name = strerrorname_np(err);
  std::string code = name ? name : "E" + std::to_string(err);
  std::string message = code + ": " + strerror(err) + ", " + syscall;
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  e.Set("errno", Napi::Number::New(env, -err));  // negative, as in Node's fs errors
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) {
  if (info.Length() <= i || !info[i].IsNumber()) throw Napi::TypeError::New(info.Env(), "fd must be a number");
  int64_t fd = info[i].As<Napi::Number>().Int64Value();
  if (fd < 0 || fd > INT32_MAX) throw Napi::RangeError::New(info.Env(), "fd out of range");
  return static_cast<int>(fd);
}

// Byte offsets and lengths: non-negative safe integers.
uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* what) {
  if (info.Length() <= i || !info[i].IsNumber())
    throw Napi::TypeError::New(info.Env(), std::string(what) + " must be a number");
  double v = info[i].As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v > 9007199254740991.0 || v != static_cast<double>(static_cast<uint64_t>(v)))
    throw Napi::RangeError::New(info.Env(), std::string(what) + " must be a non-negative safe integer");
  return static_cast<uint64_t>(v);
}

// A worker that runs one blocking call on the libuv pool and settles a Promise.
class CallWorker : public Napi::AsyncWorker {
 public:
  CallWorker(Napi::Env env, const char* syscall)
      : Napi::AsyncWorker(env, "bkp_native"), deferred_(Napi::Promise::Deferred::New(env)), syscall_(syscall) {}
  Napi::Promise Promise() { return deferred_.Promise(); }

 protected:
  // Runs off the main thread: returns -1 with errno set on failure.
  virtual long Call() = 0;
  virtual Napi::Value Result(Napi::Env env) { return env.Undefined(); }
  long rc_ = 0;

 private:
  void Execute() override {
    rc_ = Call();
    err_ = rc_ < 0 ? errno : 0;
  }
  void OnOK() override {
    Napi::HandleScope scope(Env());
    if (err_ != 0) deferred_.Reject(ErrnoError(Env(), err_, syscall_).Value());
    else deferred_.Resolve(Result(Env()));
  }
  void OnError(const Napi::Error& e) override { deferred_.Reject(e.Value()); }

  Napi::Promise::Deferred deferred_;
  const char* syscall_;
  int err_ = 0;
};

// --- quick block-device queries (sync) ---

Napi::Value BlockDeviceSize(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t size = 0;
  if (::ioctl(fd, BLKGETSIZE64, &size) < 0) throw ErrnoError(info.Env(), errno, "ioctl");
  return Napi::Number::New(info.Env(), static_cast<double>(size));
}

Napi::Value SectorSizes(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int logical = 0;
  unsigned int physical = 0;
  if (::ioctl(fd, BLKSSZGET, &logical) < 0) throw ErrnoError(info.Env(), errno, "ioctl");
  if (::ioctl(fd, BLKPBSZGET, &physical) < 0) throw ErrnoError(info.Env(), errno, "ioctl");
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("logical", Napi::Number::New(info.Env(), logical));
  o.Set("physical", Napi::Number::New(info.Env(), physical));
  return o;
}

// --- BLKZEROOUT / BLKDISCARD ---

class RangeIoctlWorker : public CallWorker {
 public:
  RangeIoctlWorker(Napi::Env env, int fd, unsigned long request, uint64_t offset, uint64_t length)
      : CallWorker(env, "ioctl"), fd_(fd), request_(request), range_{offset, length} {}

 protected:
  long Call() override {
    int rc;
    do rc = ::ioctl(fd_, request_, range_);
    while (rc < 0 && errno == EINTR);
    return rc;
  }

 private:
  int fd_;
  unsigned long request_;
  uint64_t range_[2];
};

Napi::Value RangeIoctl(const Napi::CallbackInfo& info, unsigned long request) {
  int fd = ArgFd(info, 0);
  uint64_t offset = ArgU64(info, 1, "offset");
  uint64_t length = ArgU64(info, 2, "length");
  auto* w = new RangeIoctlWorker(info.Env(), fd, request, offset, length);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

Napi::Value ZeroOut(const Napi::CallbackInfo& info) { return RangeIoctl(info, BLKZEROOUT); }
Napi::Value Discard(const Napi::CallbackInfo& info) { return RangeIoctl(info, BLKDISCARD); }

// --- fallocate ---

class FallocateWorker : public CallWorker {
 public:
  FallocateWorker(Napi::Env env, int fd, int mode, uint64_t offset, uint64_t length)
      : CallWorker(env, "fallocate"), fd_(fd), mode_(mode), offset_(offset), length_(length) {}

 protected:
  long Call() override {
    int rc;
    do rc = ::fallocate(fd_, mode_, static_cast<off_t>(offset_), static_cast<off_t>(length_));
    while (rc < 0 && errno == EINTR);
    return rc;
  }

 private:
  int fd_, mode_;
  uint64_t offset_, length_;
};

Napi::Value Fallocate(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  if (info.Length() < 2 || !info[1].IsNumber()) throw Napi::TypeError::New(info.Env(), "mode must be a number");
  int mode = info[1].As<Napi::Number>().Int32Value();
  uint64_t offset = ArgU64(info, 2, "offset");
  uint64_t length = ArgU64(info, 3, "length");
  auto* w = new FallocateWorker(info.Env(), fd, mode, offset, length);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// --- FIEMAP: every extent of the file, FIEMAP_FLAG_SYNC so delayed allocations are mapped ---

class FiemapWorker : public CallWorker {
 public:
  FiemapWorker(Napi::Env env, int fd) : CallWorker(env, "ioctl"), fd_(fd) {}

 protected:
  long Call() override {
    const unsigned kBatch = 256;
    std::vector<char> mem(sizeof(struct fiemap) + kBatch * sizeof(struct fiemap_extent));
    auto* fm = reinterpret_cast<struct fiemap*>(mem.data());
    uint64_t start = 0;
    for (;;) {
      std::memset(mem.data(), 0, mem.size());
      fm->fm_start = start;
      fm->fm_length = ~0ULL - start;
      fm->fm_flags = FIEMAP_FLAG_SYNC;
      fm->fm_extent_count = kBatch;
      int rc;
      do rc = ::ioctl(fd_, FS_IOC_FIEMAP, fm);
      while (rc < 0 && errno == EINTR);
      if (rc < 0) return -1;
      if (fm->fm_mapped_extents == 0) return 0;
      for (unsigned i = 0; i < fm->fm_mapped_extents; i++) extents_.push_back(fm->fm_extents[i]);
      const struct fiemap_extent& last = fm->fm_extents[fm->fm_mapped_extents - 1];
      if (last.fe_flags & FIEMAP_EXTENT_LAST) return 0;
      start = last.fe_logical + last.fe_length;
    }
  }
  Napi::Value Result(Napi::Env env) override {
    Napi::Array a = Napi::Array::New(env, extents_.size());
    for (size_t i = 0; i < extents_.size(); i++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("logical", Napi::Number::New(env, static_cast<double>(extents_[i].fe_logical)));
      o.Set("physical", Napi::Number::New(env, static_cast<double>(extents_[i].fe_physical)));
      o.Set("length", Napi::Number::New(env, static_cast<double>(extents_[i].fe_length)));
      o.Set("flags", Napi::Number::New(env, extents_[i].fe_flags));
      a.Set(i, o);
    }
    return a;
  }

 private:
  int fd_;
  std::vector<struct fiemap_extent> extents_;
};

Napi::Value Fiemap(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  auto* w = new FiemapWorker(info.Env(), fd);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// --- generic ioctl with pointer patching (blksnap) ---

class IoctlWorker : public CallWorker {
 public:
  IoctlWorker(Napi::Env env, int fd, unsigned long request, Napi::Buffer<uint8_t> arg,
              const std::vector<Napi::Buffer<uint8_t>>& keep)
      : CallWorker(env, "ioctl"), fd_(fd), request_(request), data_(arg.Data()) {
    // The buffers must outlive the call: hold them until the worker is destroyed.
    refs_.push_back(Napi::Persistent(arg.As<Napi::Object>()));
    for (const auto& b : keep) refs_.push_back(Napi::Persistent(b.As<Napi::Object>()));
  }

 protected:
  long Call() override { return ::ioctl(fd_, request_, data_); }
  Napi::Value Result(Napi::Env env) override { return Napi::Number::New(env, static_cast<double>(rc_)); }

 private:
  int fd_;
  unsigned long request_;
  void* data_;
  std::vector<Napi::ObjectReference> refs_;
};

Napi::Value Ioctl(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t request = ArgU64(info, 1, "request");
  if (request > 0xffffffffULL) throw Napi::RangeError::New(env, "request must fit in 32 bits");
  if (info.Length() < 3 || !info[2].IsBuffer()) throw Napi::TypeError::New(env, "arg must be a Buffer");
  Napi::Buffer<uint8_t> arg = info[2].As<Napi::Buffer<uint8_t>>();
  std::vector<Napi::Buffer<uint8_t>> keep;
  if (info.Length() > 3 && !info[3].IsUndefined()) {
    if (!info[3].IsArray()) throw Napi::TypeError::New(env, "pointers must be an array");
    Napi::Array ptrs = info[3].As<Napi::Array>();
    for (uint32_t i = 0; i < ptrs.Length(); i++) {
      Napi::Value v = ptrs.Get(i);
      if (!v.IsObject()) throw Napi::TypeError::New(env, "pointers[i] must be {at, buffer}");
      Napi::Object o = v.As<Napi::Object>();
      Napi::Value at = o.Get("at"), buf = o.Get("buffer");
      if (!at.IsNumber() || !buf.IsBuffer()) throw Napi::TypeError::New(env, "pointers[i] must be {at: number, buffer: Buffer}");
      int64_t off = at.As<Napi::Number>().Int64Value();
      if (off < 0 || off % 8 != 0 || static_cast<uint64_t>(off) + 8 > arg.Length())
        throw Napi::RangeError::New(env, "pointers[i].at must be an 8-aligned offset inside arg");
      Napi::Buffer<uint8_t> b = buf.As<Napi::Buffer<uint8_t>>();
      uint64_t addr = reinterpret_cast<uintptr_t>(b.Data());
      std::memcpy(arg.Data() + off, &addr, sizeof addr);
      keep.push_back(b);
    }
  }
  auto* w = new IoctlWorker(env, fd, static_cast<unsigned long>(request), arg, keep);
  Napi::Promise p = w->Promise();
  w->Queue();
  return p;
}

// alignedOffset(arrayBuffer, alignment): the first offset in the buffer whose address is a
// multiple of alignment (O_DIRECT needs aligned memory; the backing store never moves, even when
// the ArrayBuffer is transferred between threads).
Napi::Value AlignedOffset(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsArrayBuffer() || !info[1].IsNumber())
    throw Napi::TypeError::New(env, "alignedOffset(arrayBuffer, alignment)");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  int64_t align = info[1].As<Napi::Number>().Int64Value();
  if (align <= 0 || (align & (align - 1)) != 0) throw Napi::RangeError::New(env, "alignment must be a power of two");
  uintptr_t addr = reinterpret_cast<uintptr_t>(ab.Data());
  uintptr_t off = (static_cast<uintptr_t>(align) - (addr % static_cast<uintptr_t>(align))) % static_cast<uintptr_t>(align);
  return Napi::Number::New(env, static_cast<double>(off));
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("alignedOffset", Napi::Function::New(env, AlignedOffset, "alignedOffset"));
  exports.Set("blockDeviceSize", Napi::Function::New(env, BlockDeviceSize, "blockDeviceSize"));
  exports.Set("sectorSizes", Napi::Function::New(env, SectorSizes, "sectorSizes"));
  exports.Set("zeroOut", Napi::Function::New(env, ZeroOut, "zeroOut"));
  exports.Set("discard", Napi::Function::New(env, Discard, "discard"));
  exports.Set("fallocate", Napi::Function::New(env, Fallocate, "fallocate"));
  exports.Set("fiemap", Napi::Function::New(env, Fiemap, "fiemap"));
  exports.Set("ioctl", Napi::Function::New(env, Ioctl, "ioctl"));
  exports.Set("FALLOC_FL_KEEP_SIZE", Napi::Number::New(env, FALLOC_FL_KEEP_SIZE));
  exports.Set("FALLOC_FL_PUNCH_HOLE", Napi::Number::New(env, FALLOC_FL_PUNCH_HOLE));
  exports.Set("FALLOC_FL_ZERO_RANGE", Napi::Number::New(env, FALLOC_FL_ZERO_RANGE));
  return exports;
}

}  // namespace

NODE_API_MODULE(bkp_native, Init)
