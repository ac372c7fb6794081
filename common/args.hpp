// Command-line flags for the examples: "--name value" pairs and bare
// "--name" switches. Anything unknown prints the usage and exits with 2.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

namespace fiber::common {

class Args {
public:
    /// `known` lists the accepted flags, e.g. {"--count", "--seconds"}.
    Args(int argc, char** argv, std::initializer_list<std::string_view> known, const char* usage)
        : usage_(usage), program_(argc > 0 ? argv[0] : "example") {
        for (int i = 1; i < argc; ++i) {
            std::string_view arg = argv[i];
            bool ok = false;
            for (std::string_view k : known) ok = ok || arg == k;
            // A value ("--count 5") is accepted right after a known flag.
            bool value = !arg.starts_with("--") && !args_.empty() && args_.back().starts_with("--");
            if (!ok && !value) fail("unknown argument '" + std::string(arg) + "'");
            args_.emplace_back(arg);
        }
    }

    bool has(std::string_view flag) const {
        for (const std::string& a : args_) {
            if (a == flag) return true;
        }
        return false;
    }

    /// The number after `flag`, or `fallback` when the flag is absent.
    long number(std::string_view flag, long fallback) const {
        for (std::size_t i = 0; i < args_.size(); ++i) {
            if (args_[i] != flag) continue;
            if (i + 1 >= args_.size()) fail(std::string(flag) + " needs a number");
            char* end = nullptr;
            long v = std::strtol(args_[i + 1].c_str(), &end, 10);
            if (*end != '\0' || v < 0) fail(std::string(flag) + " needs a number >= 0");
            return v;
        }
        return fallback;
    }

    [[noreturn]] void fail(const std::string& why) const {
        std::fprintf(stderr, "error: %s\nusage: %s %s\n", why.c_str(), program_.c_str(), usage_);
        std::exit(2);
    }

private:
    const char* usage_;
    std::string program_;
    std::vector<std::string> args_;
};

}  // namespace fiber::common
