-- GET a page of 50 of a random category, most expensive first.   wrk ... -s list_products.lua URL
dofile("benchmarks/wrk/common.lua")

function init(args)
   seed_random()
end

function request()
   local category = CATEGORIES[math.random(#CATEGORIES)]
   return wrk.format("GET", "/api/v1/products?category=" .. category .. "&sort=-price&per_page=50")
end
