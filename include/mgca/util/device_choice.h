// Which device a rank computes on, as a setting (no torch): runtime.device
// of a job and `mgca eval --device`. util/device.h maps it onto a device.
#pragma once

#include <string_view>

#include "mgca/util/option_types.h"

namespace mgca::util {

enum class DeviceChoice { Auto, Cpu, Cuda };

inline constexpr NamedValue<DeviceChoice> kDeviceChoiceNames[] = {
    {DeviceChoice::Auto, "auto"}, {DeviceChoice::Cpu, "cpu"}, {DeviceChoice::Cuda, "cuda"}};
constexpr const auto& enum_names(DeviceChoice) { return kDeviceChoiceNames; }

// "auto" | "cpu" | "cuda"; anything else is an error naming `setting`.
inline DeviceChoice parse_device_choice(std::string_view name, std::string_view setting) {
  return parse_enum<DeviceChoice>(name, setting);
}

}  // namespace mgca::util
