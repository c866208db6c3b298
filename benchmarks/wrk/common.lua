-- Shared by the workload scripts (loaded with dofile; wrk runs from the repository root).
-- setup() numbers the threads (each seeds its own random numbers from it);
-- done() prints one machine-readable line that benchmarks/loadgen.py parses.

local thread_count = 0

function setup(thread)
   thread_count = thread_count + 1
   thread:set("tid", thread_count)
end

CATEGORIES = {
   "books", "garden-tools", "kitchen", "toys", "outdoor", "office-supplies", "electronics",
   "pet-care", "beauty", "sports", "home-decor", "music", "baby", "automotive", "crafts",
   "grocery", "health", "shoes", "jewellery", "lighting",
}

function seed_random()
   math.randomseed(20240501 + 7919 * (tid or 0))
end

-- A product id that is for sale: the seed retires every id divisible by 50.
function available_product(n)
   while true do
      local id = math.random(1, n)
      if id % 50 ~= 0 then
         return id
      end
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect": %d, "read": %d, '
      .. '"write": %d, "status": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, '
      .. '"max_us": %d, "mean_us": %.1f}\n',
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
      e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean))
end
