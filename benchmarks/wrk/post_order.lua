-- POST /api/v1/orders as a random customer: 1-3 lines of products for sale, 1-3 units each.
--   wrk ... -s post_order.lua URL -- <number of products> <file of customer tokens, one a line>
dofile("benchmarks/wrk/common.lua")

local n = 1
local tokens = {}

function init(args)
   n = tonumber(args[1])
   for line in io.lines(args[2]) do
      if line ~= "" then
         tokens[#tokens + 1] = "Bearer " .. line
      end
   end
   seed_random()
end

function request()
   local lines, seen = {}, {}
   for _ = 1, math.random(1, 3) do
      local id = available_product(n)
      if not seen[id] then
         seen[id] = true
         lines[#lines + 1] = string.format('{"product_id": %d, "quantity": %d}', id, math.random(1, 3))
      end
   end
   local body = '{"items": [' .. table.concat(lines, ", ") .. '], "shipping_address": "1 Bench Street, Testville"}'
   local headers = {["Content-Type"] = "application/json", ["Authorization"] = tokens[math.random(#tokens)]}
   return wrk.format("POST", "/api/v1/orders", headers, body)
end
