//! The admin service: tenants and API keys over gRPC.

use std::sync::Arc;

use pulse_proto::admin::v1 as pb;
use pulse_proto::admin::v1::admin_service_server::{AdminService, AdminServiceServer};
use pulse_proto::common::v1::PageResponse;
use pulse_proto::tonic::{Request, Response, Status};

use super::{caller, status};
use crate::auth::{ApiKey, Auth, Tenant};
use crate::time::to_proto;

#[derive(Debug, Clone)]
pub struct AdminGrpc {
    auth: Arc<Auth>,
}

pub fn server(auth: Arc<Auth>, max_message_bytes: usize) -> AdminServiceServer<AdminGrpc> {
    AdminServiceServer::new(AdminGrpc { auth }).max_decoding_message_size(max_message_bytes)
}

fn tenant_pb(t: Tenant) -> pb::Tenant {
    let Tenant { id, name, created_at } = t;
    pb::Tenant { id, name, created_at: Some(to_proto(created_at)) }
}

fn key_pb(k: ApiKey) -> pb::ApiKey {
    let ApiKey { id, tenant_id, name, created_at, revoked_at } = k;
    pb::ApiKey { id, tenant_id, name, created_at: Some(to_proto(created_at)), revoked_at: revoked_at.map(to_proto) }
}

fn page(next_page_token: String) -> Option<PageResponse> {
    Some(PageResponse { next_page_token })
}

#[pulse_proto::tonic::async_trait]
impl AdminService for AdminGrpc {
    async fn create_tenant(&self, req: Request<pb::CreateTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let pb::CreateTenantRequest { name } = req.into_inner();
        let tenant = self.auth.create_tenant(&name).await.map_err(status)?;
        tracing::info!(tenant_id = %tenant.id, name = %tenant.name, "tenant created");
        Ok(Response::new(tenant_pb(tenant)))
    }

    async fn get_tenant(&self, req: Request<pb::GetTenantRequest>) -> Result<Response<pb::Tenant>, Status> {
        let pb::GetTenantRequest { tenant_id } = req.into_inner();
        Ok(Response::new(tenant_pb(self.auth.tenant(&tenant_id).await.map_err(status)?)))
    }

    async fn list_tenants(
        &self,
        req: Request<pb::ListTenantsRequest>,
    ) -> Result<Response<pb::ListTenantsResponse>, Status> {
        let pb::ListTenantsRequest { page: p } = req.into_inner();
        let p = p.unwrap_or_default();
        let (tenants, next) = self.auth.tenants(&p.page_token, p.page_size).await.map_err(status)?;
        Ok(Response::new(pb::ListTenantsResponse {
            tenants: tenants.into_iter().map(tenant_pb).collect(),
            page: page(next),
        }))
    }

    async fn create_api_key(
        &self,
        req: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let pb::CreateApiKeyRequest { tenant_id, name } = req.into_inner();
        let (key, secret) = self.auth.create_key(&tenant_id, &name).await.map_err(status)?;
        tracing::info!(key_id = %key.id, tenant_id = %key.tenant_id, "API key created");
        Ok(Response::new(pb::CreateApiKeyResponse { key: Some(key_pb(key)), secret }))
    }

    async fn list_api_keys(
        &self,
        req: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let pb::ListApiKeysRequest { tenant_id, page: p } = req.into_inner();
        let p = p.unwrap_or_default();
        let (keys, next) = self.auth.keys(&tenant_id, &p.page_token, p.page_size).await.map_err(status)?;
        Ok(Response::new(pb::ListApiKeysResponse { keys: keys.into_iter().map(key_pb).collect(), page: page(next) }))
    }

    async fn revoke_api_key(&self, req: Request<pb::RevokeApiKeyRequest>) -> Result<Response<pb::ApiKey>, Status> {
        let pb::RevokeApiKeyRequest { key_id } = req.into_inner();
        let key = self.auth.revoke_key(&key_id).await.map_err(status)?;
        tracing::info!(key_id = %key.id, "API key revoked");
        Ok(Response::new(key_pb(key)))
    }

    async fn who_am_i(&self, req: Request<pb::WhoAmIRequest>) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let c = caller(&req)?;
        Ok(Response::new(pb::WhoAmIResponse {
            tenant_id: c.tenant_id.unwrap_or_default(),
            key_id: c.key_id,
            admin: c.admin,
        }))
    }
}
