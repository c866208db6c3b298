-- POST /api/v1/products as the admin, a new sku each time.
--   wrk ... -s post_product.lua URL -- <run nonce> <admin token>
dofile("benchmarks/wrk/common.lua")

local nonce, headers
local counter = 0

function init(args)
   nonce = args[1]
   headers = {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[2]}
   seed_random()
end

function request()
   counter = counter + 1
   local body = string.format(
      '{"sku": "B%s-%d-%d", "name": "Bench product %d", "description": "Created by the benchmark.", '
      .. '"category": "%s", "price": "%d.%02d", "stock": 100}',
      nonce, tid or 0, counter, counter, CATEGORIES[math.random(#CATEGORIES)],
      math.random(1, 999), math.random(0, 99))
   return wrk.format("POST", "/api/v1/products", headers, body)
end
