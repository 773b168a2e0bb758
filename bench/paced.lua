-- wrk script for `make bench`'s paced floor: bench/beacon.lua's beacons, each connection waiting
-- 1 ms after every answer before its next request, so that a few connections hold a system at
-- about a rate the bench chooses (the Worker's, to compare tails at the same load).
--   wrk ... -s bench/paced.lua URL -- ORIGIN RUN_ID
local dir = debug.getinfo(1, 'S').source:match('^@(.*/)') or './'
dofile(dir .. 'beacon.lua')

function delay()
  return 1
end
