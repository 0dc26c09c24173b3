-- Live members of a group: drop the expired ones, return the rest.
-- KEYS[1] group sorted set (member -> time added); ARGV[1] oldest time still alive
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
