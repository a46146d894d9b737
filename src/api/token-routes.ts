/**
 * API keys over HTTP (`arcnet token create|list|revoke` calls these): operators create keys of any
 * role, list them (never their secrets) and revoke them; `GET /api/v1/whoami` tells any caller what
 * its key proves. A key's whole text is in the create answer only.
 */
import type { FastifyInstance } from 'fastify';
import { Type, type Static } from '@sinclair/typebox';
import type { KeyRing } from '../access/api-keys.ts';
import type { AuditLog } from '../access/audit.ts';
import { ACCESS } from '../access/policy.ts';
import { originOf, principalOf, ROLES } from '../access/principal.ts';
import { ArcError } from '../core/errors.ts';
import type { Clock } from '../core/clock.ts';

const Geozone = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });

const CreateBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 255 }),
    // Node keys are issued at enrolment only, bound to the node that enrolled.
    role: Type.Union(ROLES.filter((r) => r !== 'node').map((r) => Type.Literal(r))),
    geozone: Type.Optional(Geozone),
    expires_in_hours: Type.Optional(Type.Integer({ minimum: 1, maximum: 24 * 3_650 })),
  },
  { additionalProperties: false },
);

const KeyId = Type.Object({ id: Type.String({ pattern: '^[0-9a-f]{16}$' }) });

/** `audit`: where key creations and revocations are recorded (who, from where); none, nothing is recorded. */
export function registerTokenRoutes(app: FastifyInstance, keys: KeyRing, clock: Clock, audit?: AuditLog): void {
  app.post<{ Body: Static<typeof CreateBody> }>('/api/v1/tokens', { schema: { body: CreateBody }, config: { access: ACCESS.operator } }, async (request, reply) => {
    const { name, role, geozone, expires_in_hours: hours } = request.body;
    if (role === 'enrolment' && geozone === undefined) throw new ArcError('INVALID_INPUT', 'body/geozone: an enrolment token enrols nodes into one geozone; name it');
    if (role !== 'enrolment' && geozone !== undefined) throw new ArcError('INVALID_INPUT', `body/geozone: only enrolment tokens are bound to a geozone, not ${role} keys`);
    const created = await keys.create({
      name,
      role,
      ...(geozone === undefined ? {} : { geozone }),
      createdBy: principalOf(request).keyId,
      ...(hours === undefined ? {} : { expiresAt: clock.now() + hours * 3_600_000 }),
    });
    const { principal, address } = originOf(request);
    const { record } = created;
    await audit?.record({ actor: principal.keyId, actorRole: principal.role, action: 'key.created', target: { kind: 'key', id: record.id }, details: { name: record.name, role: record.role, geozone: record.geozone, expires_at: record.expires_at }, address });
    return reply.status(201).send({ token: created.record, key: created.key });
  });

  app.get('/api/v1/tokens', { config: { access: ACCESS.operator } }, async () => {
    const tokens = await keys.list();
    return { count: tokens.length, tokens };
  });

  app.delete<{ Params: Static<typeof KeyId> }>('/api/v1/tokens/:id', { schema: { params: KeyId }, config: { access: ACCESS.operator } }, async (request) => {
    const { principal, address } = originOf(request);
    // Revoking a revoked key changes nothing, so it records nothing.
    const wasActive = audit ? (await keys.get(request.params.id))?.revoked_at === null : false;
    const token = await keys.revoke(request.params.id, principal.keyId);
    if (wasActive) await audit?.record({ actor: principal.keyId, actorRole: principal.role, action: 'key.revoked', target: { kind: 'key', id: token.id }, details: { name: token.name, role: token.role, node_id: token.node_id }, address });
    return { token };
  });

  app.get('/api/v1/whoami', { config: { access: { kind: 'roles', roles: ROLES } } }, async (request) => principalOf(request));
}
