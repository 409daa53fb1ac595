// The smallest ltijs 5.x tool a developer would write: PostgreSQL through ltijs-sequelize,
// one registered platform, a landing page that greets the launching user. Used only by
// bench/launch.py as the peer reference (install: npm install into bench/.work).
//
// Env: PORT, PGDATABASE, PLATFORM_ISS, CLIENT_ID, AUTH_URL, TOKEN_URL, JWKS_URL.
'use strict'
const path = require('path')
const work = path.join(__dirname, '.work', 'node_modules')
const lti = require(path.join(work, 'ltijs')).Provider
const Database = require(path.join(work, 'ltijs-sequelize'))

async function main () {
  const env = process.env
  const db = new Database(env.PGDATABASE, 'postgres', '', {
    host: '127.0.0.1',
    port: 5432,
    dialect: 'postgres',
    logging: false,
    pool: { max: 10 }
  })
  // Plain http on loopback, as the other two servers in the bench: cookies cannot be Secure.
  lti.setup('bench-encryption-key-0123456789', { plugin: db }, {
    appRoute: '/',
    loginRoute: '/login',
    cookies: { secure: false, sameSite: 'Lax' },
    devMode: false
  })
  lti.onConnect((token, req, res) => {
    const name = (token.userInfo && token.userInfo.name) || token.user
    return res.send(`<!doctype html><title>Landing</title><h1>Hello ${encodeURIComponent(name)}</h1>`)
  })
  await lti.deploy({ port: Number(env.PORT), silent: true })
  await lti.registerPlatform({
    url: env.PLATFORM_ISS,
    name: 'bench platform',
    clientId: env.CLIENT_ID,
    authenticationEndpoint: env.AUTH_URL,
    accesstokenEndpoint: env.TOKEN_URL,
    authConfig: { method: 'JWK_SET', key: env.JWKS_URL }
  })
  console.log('ltijs ready')
}

main().catch((err) => { console.error(err); process.exit(1) })
