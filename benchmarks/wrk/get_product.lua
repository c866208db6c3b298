-- GET /api/v1/products/<random id>.   wrk ... -s get_product.lua URL -- <number of products>
dofile("benchmarks/wrk/common.lua")

local n = 1

function init(args)
   n = tonumber(args[1])
   seed_random()
end

function request()
   return wrk.format("GET", "/api/v1/products/" .. math.random(1, n))
end
