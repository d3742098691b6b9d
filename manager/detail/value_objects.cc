#include "manager/detail/value_objects.h"

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace ipc::manager::detail {
namespace {

class ListImpl final : public wire::SharedList::Server, public ObjectBase {
 public:
  explicit ListImpl(std::string name) : ObjectBase(std::move(name), Kind::kList) {}

  kj::Promise<void> append(AppendContext c) override {
    return translate_to_wire([&] {
      check_alive();
      items_.push_back(from_wire(c.getParams().getValue()));
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> get(GetContext c) override {
    check_alive();
    const Value& v = items_[index(c.getParams().getIndex())];
    to_wire(v, c.getResults(value_results(v)).initValue());
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext c) override {
    return translate_to_wire([&] {
      check_alive();
      auto p = c.getParams();
      std::size_t i = index(p.getIndex());
      items_[i] = from_wire(p.getValue());
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> pop(PopContext c) override {
    check_alive();
    std::size_t i = index(c.getParams().getIndex());
    to_wire(items_[i], c.getResults(value_results(items_[i])).initValue());
    items_.erase(items_.begin() + static_cast<std::ptrdiff_t>(i));
    return kj::READY_NOW;
  }
  kj::Promise<void> size(SizeContext c) override {
    check_alive();
    c.getResults(kScalarResults).setSize(items_.size());
    return kj::READY_NOW;
  }
  kj::Promise<void> items(ItemsContext c) override {
    check_alive();
    std::uint64_t words = 2;
    for (const auto& v : items_) words += wire_size_words(v);
    auto out = c.getResults(capnp::MessageSize{words, 0}).initValues(static_cast<unsigned>(items_.size()));
    for (unsigned i = 0; i < items_.size(); ++i) to_wire(items_[i], out[i]);
    return kj::READY_NOW;
  }
  kj::Promise<void> extend(ExtendContext c) override {
    return translate_to_wire([&] {
      check_alive();
      std::vector<Value> converted;
      for (auto v : c.getParams().getValues()) converted.push_back(from_wire(v));
      for (auto& v : converted) items_.push_back(std::move(v));
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> clear(ClearContext) override {
    check_alive();
    items_.clear();
    return kj::READY_NOW;
  }

 private:
  // Python indexing: -1 is the last item.
  std::size_t index(std::int64_t i) const {
    auto n = static_cast<std::int64_t>(items_.size());
    std::int64_t j = i < 0 ? i + n : i;
    if (j < 0 || j >= n) {
      fail(Tag::kInvalidArgument, "list index " + std::to_string(i) + " out of range (size " + std::to_string(n) + ")");
    }
    return static_cast<std::size_t>(j);
  }

  std::vector<Value> items_;
};

class ValueImpl final : public wire::SharedValue::Server, public ObjectBase {
 public:
  explicit ValueImpl(std::string name) : ObjectBase(std::move(name), Kind::kValue) {}

  kj::Promise<void> get(GetContext c) override {
    check_alive();
    to_wire(value_, c.getResults(value_results(value_)).initValue());
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext c) override {
    return translate_to_wire([&] {
      check_alive();
      value_ = from_wire(c.getParams().getValue());
      return kj::READY_NOW;
    });
  }
  kj::Promise<void> compareExchange(CompareExchangeContext c) override {
    return translate_to_wire([&] {
      check_alive();
      auto p = c.getParams();
      Value expected = from_wire(p.getExpected());
      Value desired = from_wire(p.getDesired());
      auto r = c.getResults(value_results(value_));
      to_wire(value_, r.initPrevious());
      if (value_ == expected) {
        value_ = std::move(desired);
        r.setExchanged(true);
      }
      return kj::READY_NOW;
    });
  }

 private:
  Value value_;
};

class CounterImpl final : public wire::Counter::Server, public ObjectBase {
 public:
  explicit CounterImpl(std::string name) : ObjectBase(std::move(name), Kind::kCounter) {}

  kj::Promise<void> add(AddContext c) override {
    check_alive();
    std::int64_t delta = c.getParams().getDelta();
    std::int64_t result;
    if (__builtin_add_overflow(value_, delta, &result)) {
      fail(Tag::kInvalidArgument, "counter overflow: " + std::to_string(value_) + " + " + std::to_string(delta));
    }
    value_ = result;
    c.getResults(kScalarResults).setValue(value_);
    return kj::READY_NOW;
  }
  kj::Promise<void> get(GetContext c) override {
    check_alive();
    c.getResults(kScalarResults).setValue(value_);
    return kj::READY_NOW;
  }
  kj::Promise<void> set(SetContext c) override {
    check_alive();
    value_ = c.getParams().getValue();
    return kj::READY_NOW;
  }

 private:
  std::int64_t value_ = 0;
};

}  // namespace

MadeObject make_list(std::string name) { return make_plain_object<ListImpl>(std::move(name)); }
MadeObject make_value(std::string name) { return make_plain_object<ValueImpl>(std::move(name)); }
MadeObject make_counter(std::string name) { return make_plain_object<CounterImpl>(std::move(name)); }

}  // namespace ipc::manager::detail
